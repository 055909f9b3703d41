"""Released DAC codecs in and out: DAC's architecture (the `dac_44k` preset: Snake, three residual units with
dilations 1, 3, 9 per block, a kernel-3 conv to the latent, factorised codes searched l2-normalised and decoded raw)
under the two naming schemes of its releases, and transformers' DacModel for `mmtok export --format hf`.

    dac   a file: descript-audio-codec's own weights (`.pth`: "state_dict" with weight_g / weight_v pairs,
          "metadata": {"kwargs": DAC's constructor arguments}; encoder.block.{i}, decoder.model.{i}, nn.Sequential
          indices); a folder: transformers' DacModel (config.json + safetensors; encoder.block.{b}.res_unit{u},
          plain weights).

Rules speak of plain weights (mmtok.export.interop.plain_state): g / v pairs are merged on reading.

Not here: EnCodec pads its convolutions by reflection and asymmetrically (causal at 24 kHz), ends its decoder
without tanh and has EMA codebooks without projections; Mimi adds a transformer bottleneck and a split RVQ (one
semantic level distilled from WavLM, seven acoustic levels). The `codec` family's convolutions do not yet express
those, so `encodec_24k` stays an approximation and neither is importable yet.
"""
from __future__ import annotations

from pathlib import Path

from mmtok.errors import CheckpointError, MmtokError
from mmtok.export.interop import Rule, Source, merge_weight_norm, read_hf_folder, read_safetensors, read_torch

RES_UNITS, DILATION_BASE = 3, 3  # DAC's residual units: dilations 1, 3, 9
# Per layout: a module name for each layout-neutral place (see _places)
ORIGINAL = dict(
    enc_in="encoder.block.0", enc_unit="encoder.block.{b1}.block.{u}", enc_snake="encoder.block.{b1}.block.3",
    enc_down="encoder.block.{b1}.block.4", enc_out_snake="encoder.block.{n1}", enc_out="encoder.block.{n2}",
    dec_in="decoder.model.0", dec_snake="decoder.model.{b1}.block.0", dec_up="decoder.model.{b1}.block.1",
    dec_unit="decoder.model.{b1}.block.{u2}", dec_out_snake="decoder.model.{n1}", dec_out="decoder.model.{n2}",
    unit=("block.0", "block.1", "block.2", "block.3"))
TRANSFORMERS = dict(
    enc_in="encoder.conv1", enc_unit="encoder.block.{b}.res_unit{u1}", enc_snake="encoder.block.{b}.snake1",
    enc_down="encoder.block.{b}.conv1", enc_out_snake="encoder.snake1", enc_out="encoder.conv2",
    dec_in="decoder.conv1", dec_snake="decoder.block.{b}.snake1", dec_up="decoder.block.{b}.conv_t1",
    dec_unit="decoder.block.{b}.res_unit{u1}", dec_out_snake="decoder.snake1", dec_out="decoder.conv2",
    unit=("snake1", "conv1", "snake2", "conv2"))
QUANTIZER_STATE = ("initted", "steps_unused", "restarts")


def _places(cfg):
    """(mmtok module, kind, place name, format arguments) for every module of the SEANet encoder / decoder with
    DAC's layout (no bottleneck). kind: "conv" (weight, bias), "snake" (alpha) or "unit" (a residual unit)."""
    B, step = len(cfg.strides), RES_UNITS + 2
    out = [("encoder.net.0", "conv", "enc_in", {})]
    for b in range(B):
        base = 1 + b * step
        for u in range(RES_UNITS):
            out.append((f"encoder.net.{base + u}", "unit", "enc_unit", dict(b=b, b1=b + 1, u=u, u1=u + 1)))
        out += [(f"encoder.net.{base + RES_UNITS}", "snake", "enc_snake", dict(b=b, b1=b + 1)),
                (f"encoder.net.{base + RES_UNITS + 1}", "conv", "enc_down", dict(b=b, b1=b + 1))]
    out += [(f"encoder.net.{1 + B * step}", "snake", "enc_out_snake", dict(n1=B + 1)),
            (f"encoder.net.{2 + B * step}", "conv", "enc_out", dict(n2=B + 2)),
            ("decoder.net.0", "conv", "dec_in", {})]
    for b in range(B):
        base = 1 + b * step
        out += [(f"decoder.net.{base}", "snake", "dec_snake", dict(b=b, b1=b + 1)),
                (f"decoder.net.{base + 1}", "conv", "dec_up", dict(b=b, b1=b + 1))]
        for u in range(RES_UNITS):
            out.append((f"decoder.net.{base + 2 + u}", "unit", "dec_unit", dict(b=b, b1=b + 1, u1=u + 1, u2=u + 2)))
    out += [(f"decoder.net.{1 + B * step}", "snake", "dec_out_snake", dict(n1=B + 1)),
            (f"decoder.net.{2 + B * step}", "conv", "dec_out", dict(n2=B + 2))]
    return out


def rules(cfg, layout: dict) -> list[Rule]:
    """One Rule per plain tensor of mmtok's codec (DAC's architecture) from a DAC layout (ORIGINAL or TRANSFORMERS)."""
    out: list[Rule] = []

    def conv(mine, theirs):
        return [Rule(f"{mine}.{w}", (f"{theirs}.{w}",)) for w in ("weight", "bias")]

    for mine, kind, place, args in _places(cfg):
        theirs = layout[place].format(**args)
        if kind == "conv":
            out += conv(mine, theirs)
        elif kind == "snake":
            out.append(Rule(f"{mine}.alpha", (f"{theirs}.alpha",)))
        else:
            snake1, conv1, snake2, conv2 = (f"{theirs}.{p}" for p in layout["unit"])
            out += [Rule(f"{mine}.block.0.alpha", (f"{snake1}.alpha",)), *conv(f"{mine}.block.1", conv1),
                    Rule(f"{mine}.block.2.alpha", (f"{snake2}.alpha",)), *conv(f"{mine}.block.3", conv2)]
    for i in range(cfg.quantizer.levels):
        mine, theirs = f"quantizer.quantizers.{i}", f"quantizer.quantizers.{i}"
        out += [Rule(f"{mine}.codebook", (f"{theirs}.codebook.weight",)),
                Rule(f"{mine}.proj_in.weight", (f"{theirs}.in_proj.weight",), "conv1d_k1"),
                Rule(f"{mine}.proj_in.bias", (f"{theirs}.in_proj.bias",)),
                Rule(f"{mine}.proj_out.weight", (f"{theirs}.out_proj.weight",), "conv1d_k1"),
                Rule(f"{mine}.proj_out.bias", (f"{theirs}.out_proj.bias",))]
        out += [Rule(f"{mine}.{k}", how="fill", value=1.0 if k == "initted" else 0.0) for k in QUANTIZER_STATE]
    out += [Rule("quantizer.dropout_seed", how="fill"), Rule("quantizer.dropout_step", how="fill")]
    return out


def dac_model(*, sample_rate: int, ch: int, strides: list[int], latent_dim: int, decoder_ch: int, levels: int,
              codebook_size: int, dim: int) -> dict:
    """The model section of DAC's architecture at these sizes (the `dac_44k` preset's fixed choices)."""
    hop = 1
    for s in strides:
        hop *= s
    return {"family": "codec", "sample_rate": sample_rate, "channels": 1,
            "segment_seconds": round(64 * hop / sample_rate, 6), "ch": ch, "strides": list(strides),
            "res_units": RES_UNITS, "dilation_base": DILATION_BASE,
            "kernel_size": 7, "latent_kernel_size": 3, "decoder_ch": decoder_ch, "residual_kernel_size": 7,
            "activation": "snake", "latent_dim": latent_dim, "bottleneck": "none", "upsampling": "dac",
            "quantizer": {"kind": "rvq", "levels": levels, "codebook_size": codebook_size, "dim": dim,
                          "l2_norm": True, "code_output": "raw", "ema": False, "kmeans_init": False,
                          "restart_after": 0, "quantizer_dropout": 0.5, "dropout_per": "sample"}}


def read_dac(path: Path, *, config: str | None = None, weights: str = "ema"):
    """DAC's own weights file, or a transformers DacModel folder -> (Source, rules)."""
    if config:
        raise MmtokError("--config does not apply to dac: the configuration is read from the release",
                         hint="drop --config")
    if path.is_dir():
        return _read_transformers(path)
    ckpt, opaque = read_torch(path, "DAC weights file (.pth)")
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} has no state_dict: not DAC's weights file",
                              hint="give DAC's .pth (from dac.utils.download) or a transformers DacModel folder")
    tensors = merge_weight_norm(state)
    kw = (ckpt.get("metadata") or {}).get("kwargs") if isinstance(ckpt.get("metadata"), dict) else None
    if not isinstance(kw, dict):
        raise CheckpointError(f"{path} has no metadata.kwargs (DAC's constructor arguments)",
                              hint="the file is not one DAC saved, or it was re-saved without its metadata")
    strides = list(kw.get("encoder_rates", [2, 4, 8, 8]))
    if list(kw.get("decoder_rates", strides[::-1])) != strides[::-1]:
        raise CheckpointError(f"DAC decoder_rates {kw['decoder_rates']} are not the encoder's reversed "
                              f"({strides[::-1]})",
                              hint="mmtok's codec decoder mirrors its encoder; this variant cannot be expressed")
    ch = int(kw.get("encoder_dim", 64))
    dim = kw.get("codebook_dim", 8)
    if isinstance(dim, (list, tuple)):
        if len(set(dim)) != 1:
            raise CheckpointError(f"per-level codebook dimensions {dim}: mmtok's RVQ has one dimension for all levels")
        dim = dim[0]
    model = dac_model(sample_rate=int(kw.get("sample_rate", 44100)), ch=ch, strides=strides,
                      latent_dim=int(kw.get("latent_dim") or ch * 2 ** len(strides)),
                      decoder_ch=int(kw.get("decoder_dim", 1536)), levels=int(kw.get("n_codebooks", 9)),
                      codebook_size=int(kw.get("codebook_size", 1024)), dim=int(dim))
    notes = ["no discriminator in DAC's released weights: the adversary starts fresh"]
    if opaque:
        notes.append(f"read {', '.join(opaque)} as inert records (not executed)")
    src = Source(tensors=tensors, model=model, recipe="audio_quickstart", weights="raw",
                 config_from="read from the file's metadata.kwargs", notes=notes)
    return src, lambda cfg: rules(cfg, ORIGINAL)


def _read_transformers(path: Path):
    cfg, files = read_hf_folder(path)
    if cfg.get("model_type") != "dac":
        raise CheckpointError(f"{path}/config.json is a {cfg.get('model_type')!r} model, not DacModel",
                              hint="give a transformers DacModel folder or DAC's own .pth file")
    strides = list(cfg.get("downsampling_ratios", [2, 4, 8, 8]))
    ch = int(cfg.get("encoder_hidden_size", 64))
    model = dac_model(sample_rate=int(cfg.get("sampling_rate", 16000)), ch=ch, strides=strides,
                      latent_dim=ch * 2 ** len(strides), decoder_ch=int(cfg.get("decoder_hidden_size", 1536)),
                      levels=int(cfg.get("n_codebooks", 9)), codebook_size=int(cfg.get("codebook_size", 1024)),
                      dim=int(cfg.get("codebook_dim", 8)))
    src = Source(tensors=merge_weight_norm(read_safetensors(files)), model=model, recipe="audio_quickstart",
                 weights="raw", config_from=f"read from {path / 'config.json'}",
                 notes=["no discriminator in a transformers folder: the adversary starts fresh"])
    return src, lambda c: rules(c, TRANSFORMERS)


def to_dac(model, recipe):
    """mmtok's codec -> (transformers' DacModel holding the same weights, strictly loaded; the check of its own
    encode / decode against `model` on random audio), or MmtokError naming what DacModel cannot express."""
    import torch

    from mmtok.export.interop import invert_rules, plain_state

    c, q = model.cfg, model.cfg.quantizer
    want = dac_model(sample_rate=c.sample_rate, ch=c.ch, strides=c.strides, latent_dim=c.ch * 2 ** len(c.strides),
                     decoder_ch=c.decoder_width, levels=q.levels, codebook_size=q.codebook_size, dim=q.dim)
    have = c.model_dump(mode="json")
    skip = {"segment_seconds", "loudness_lufs", "preset", "bottleneck_layers", "bottleneck_heads"}
    if all(s % 2 == 0 for s in c.strides):
        skip.add("upsampling")  # the two upsampling rules agree at even strides
    differ = [k for k in want if k not in skip and k != "quantizer" and have.get(k) != want[k]]
    differ += [f"quantizer.{k}" for k in ("kind", "l2_norm", "code_output")
               if have["quantizer"].get(k) != want["quantizer"][k]]
    if differ:
        raise MmtokError("transformers has no class for this codec: DacModel needs DAC's architecture, and this "
                         "model differs in " + ", ".join(differ[:5]),
                         hint="--format hf writes codecs of DAC's architecture (preset dac_44k)")
    try:
        from transformers import DacConfig, DacModel
    except ImportError:
        raise MmtokError("--format hf needs transformers", hint="pip install 'mmtok[lm]'") from None
    hf = DacModel(DacConfig(encoder_hidden_size=c.ch, downsampling_ratios=list(c.strides),
                            decoder_hidden_size=c.decoder_width, n_codebooks=q.levels, codebook_size=q.codebook_size,
                            codebook_dim=q.dim, sampling_rate=c.sample_rate)).eval()
    state = invert_rules(rules(c, TRANSFORMERS), plain_state(model))
    with torch.no_grad():
        hf.load_state_dict(state, strict=True)
        x = torch.rand(2, 1, 8 * c.hop, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
        ids = hf.encode(x).audio_codes.transpose(1, 2)
        own_ids = model.encode(x)
        audio = hf.decode(audio_codes=own_ids.transpose(1, 2)).audio_values
        own = model.decode(own_ids)[:, 0]  # DAC's output is short by one sample per odd stride; mmtok pads zeros
        n = audio.shape[-1]
        check = {"inputs": "2 random waveforms", "ids_equal": float((ids == own_ids).float().mean()),
                 "max_output_difference": max(float((audio - own[:, :n]).abs().max()), float(own[:, n:].abs().sum()))}
    return hf, check
