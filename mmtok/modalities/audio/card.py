"""The model card (README.md) of an audio bundle: what the tokens are, bitrates, how good they are, how to use them
(with mmtok, with plain torch graphs, as LM sequences), and the exact training recipe."""
from __future__ import annotations

from mmtok.export.card import plain_torch, recipe_and_files


def model_card(cfg: dict, meta: dict, evaluation: dict | None, recipe_yaml: str, info: dict, *, graphs: bool,
               name: str, onnx: bool = False) -> str:
    k, n, hop = meta["codebook_size"], meta["num_codebooks"], meta["hop"]
    sr, rate, c = meta["sample_rate"], meta["frame_rate"], meta["input_size"][0]
    t = meta["input_size"][1]
    rates = meta["bitrate_per_level"]
    lines = [
        f"# {name}", "",
        f"A neural audio codec used as a tokenizer ({cfg['family']}, recipe `{cfg['recipe_name']}`), exported by mmtok "
        f"{cfg['mmtok_version']}: {c}-channel audio at {sr} Hz becomes {rate:g} frames per second (one per {hop} "
        f"samples), each frame {n} residual-VQ ids from codebooks of {k} codes; the first n levels alone decode at a "
        "lower bitrate.", "",
        "| | |", "|---|---|",
        f"| input | float32 [B, {c}, T] in [-1, 1] at {sr} Hz (other rates are resampled; files are decoded) |",
        f"| tokens | int64 [B, T/{hop}, n] in [0, {k}), frame-major, levels coarse to fine, 1 <= n <= {n} |",
        f"| codebooks | {n} x {k} codes of dim {meta['codebook_dim']} ({meta['quantizer']}"
        f"{', l2-normalised' if meta.get('l2_norm') else ''}) |",
        "| bitrate | " + ", ".join(f"{i + 1}: {r / 1000:g}" for i, r in enumerate(rates)) + " kbps (levels: kbps) |",
        f"| weights | {cfg['weights']} (training step {cfg['step']}) |",
        f"| LM orders | interleave (one vocabulary of {n * k}, level l at offset l * {k}); MusicGen delay pattern "
        f"({n} streams, pad id {k}) |", "",
        "## Evaluation", "",
    ]
    if evaluation:
        proto, m = evaluation.get("protocol", {}), evaluation.get("metrics", {})
        lines += [f"Reconstruction of {proto.get('num_samples')} segments of {proto.get('segment_seconds')} s from "
                  f"`{proto.get('data')}` ({proto.get('split')} split), {evaluation.get('model', {}).get('weights')} "
                  "weights; mel and STFT distances as DAC defines them (lower is better), SI-SDR in dB (full protocol "
                  "in eval.json).", "",
                  "| levels | kbps | mel distance | STFT distance | SI-SDR (dB) |", "|---|---|---|---|---|"]
        for lv, row in sorted(m.get("by_levels", {}).items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {lv} | {row['kbps']:g} | {row['mel_distance']:.3f} | {row['stft_distance']:.3f} | "
                         f"{row['si_sdr']:.2f} |")
        lines.append("")
        extra = [(key, label) for key, label in (("pesq", "PESQ (wide band)"), ("stoi", "STOI")) if
                 isinstance(m.get(key), float)]
        if extra:
            lines += ["| metric (all levels) | value |", "|---|---|"]
            lines += [f"| {label} | {m[key]:.3f} |" for key, label in extra]
            lines.append("")
        usage = m.get("usage_per_level_pct")
        if usage:
            lines += ["Codebook usage per level (%): " + ", ".join(f"{u:.1f}" for u in usage), ""]
    else:
        lines.append("Not evaluated before export (run `mmtok eval MODEL --data ...`, then export again).")
    lines += [
        "", "## Usage", "", "```python", "import mmtok", "",
        f'tok = mmtok.load("{name}")                 # verifies checksums; JSON + safetensors only',
        f'ids = tok.encode("speech.wav")            # int64 [1, frames, {n}]',
        "ids = tok.encode(wave, levels=2, sample_rate=44100)  # float [B, C, T] at any rate, 2 levels",
        f"wave = tok.decode(ids)                    # float32 [B, {c}, frames * {hop}] in [-1, 1] at {sr} Hz",
        f"seq = tok.interleave(ids)                 # [B, frames * n], level l offset by l * {k}",
        f"streams = tok.delay(ids)                  # [B, n, frames + n - 1], pad id {k}", "```", "",
    ]
    if graphs:
        lines += plain_torch(
            f"Without mmtok (plain torch; torch.export graphs, dynamic batch, fixed T = {t} samples = {t / sr:g} s, "
            "all levels):", name,
            f"ids = encoder(wave)      # float32 [B, {c}, {t}] in [-1, 1] -> int64 [B, {t // hop}, {n}]",
            "recon = decoder(ids)      # -> float32 [B, C, T] in [-1, 1]")
    lines += recipe_and_files(cfg, recipe_yaml, evaluation=evaluation, graphs=graphs, onnx=onnx,
                              tokenizer_json="token metadata, bitrates, LM orders")
    return "\n".join(lines)
