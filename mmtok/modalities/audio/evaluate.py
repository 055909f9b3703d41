"""`mmtok eval` for audio codecs: one pass over held-out segments, every metric at several numbers of RVQ levels.

Protocol: the "val" split of the data source (mmtok.modalities.audio.stream: every file decoded, mixed down / resampled
to the model's rate and cut into consecutive non-overlapping segments of the model's segment length, a file
shorter than one segment zero-padded); EMA weights unless told otherwise; ids from one encode with every level,
each reconstruction decoded from the first n levels (n in `levels`, default 1, 2, 4, ... and all) and clamped to
[-1, 1]. Per n: DAC's mel distance (7 scales, windows 32..2048, 5..320 mel bands, log10 of mel magnitudes clamped
at 1e-5) and STFT distance (windows 2048 and 512: log10 power L1 + magnitude L1), SI-SDR (dB, zero-mean), bitrate
n * log2(K) * frame rate. With all levels: wide-band PESQ (at 16 kHz) and STOI when their packages are installed,
on each batch's segments joined end to end (both measures need seconds of speech, a segment is a fraction of one).
Codebook usage, perplexity and entropy of each level over the whole pass on all ranks; encode and decode
throughput (segments/s) timed apart, in the one evaluation loop (mmtok.evaluation.harness). Results:
metrics.json, report.md, spectrogram.png (originals above, all-level reconstructions below), clips/*.wav,
codebook_usage.png, codebook_counts.npy.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from mmtok.errors import MmtokError
from mmtok.evaluation.harness import EvalPass, run

CLIPS = 4


def default_levels(total: int) -> list[int]:
    """1, 2, 4, ... below `total`, and `total`."""
    out, n = [], 1
    while n < total:
        out.append(n)
        n *= 2
    return out + [total]


def check_levels(levels, total: int, bitrates: list[float] | None = None) -> list[int]:
    """`levels` (ints, or None for default_levels) sorted and unique; MmtokError for one outside 1..total."""
    if levels is None:
        return default_levels(total)
    bad = [n for n in levels if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= total]
    if bad or not levels:
        rates = f" ({', '.join(f'{r / 1000:g}' for r in bitrates)} kbps)" if bitrates else ""
        raise MmtokError(f"levels {list(levels)}: this codec has {total} RVQ levels{rates}",
                         hint=f"give numbers of levels from 1 to {total}")
    return sorted(set(levels))


def evaluate(model_path: str | os.PathLike, data: str, *, levels: list[int] | None = None,
             bitrate: float | None = None, **options) -> dict:
    """Evaluate the audio codec at `model_path` (run dir, .ckpt or bundle) on `data` ("demo", a folder of audio or
    shards); `levels` the numbers of RVQ levels measured besides all of them (default 1, 2, 4, ...); `bitrate`
    (kbps) adds the most levels that fit in it (MmtokError when even one level needs more). `options` are the
    harness's (mmtok.evaluation.harness.run: out, force, num_samples (segments), batch_size, devices, ...)."""
    return run(model_path, data, lambda model, recipe: AudioPass(model, recipe, levels=levels, bitrate=bitrate),
               **options)


class AudioPass(EvalPass):
    unit = "segments"

    def __init__(self, model, recipe, *, levels: list[int] | None, bitrate: float | None):
        super().__init__(model, recipe)
        spec = self.spec
        self.total = spec.num_codebooks
        self.rates = rates = list(spec["bitrate_per_level"])
        chosen = sorted(set(check_levels(levels, self.total, rates)) | {self.total})  # all levels: the headline
        if bitrate is not None:
            fits = [i + 1 for i, r in enumerate(rates) if r <= bitrate * 1000 + 1e-6]
            if not fits:
                raise MmtokError(f"--bitrate {bitrate:g} kbps is below this codec's lowest bitrate ({rates[0] / 1000:g}"
                                 " kbps with one level)", hint=f"its bitrates: {', '.join(f'{r / 1000:g}' for r in rates)} "
                                 "kbps")
            chosen = sorted(set(chosen) | {fits[-1]})
        self.chosen = chosen
        self.sr = int(spec["sample_rate"])
        self.shown, self.quiet = [], []  # (name, segment, reconstruction) for the picture and clips

    def setup(self, device, *, console, is_main: bool, world: int) -> None:
        from mmtok.metrics.audio import AudioDistances, LevelUsage, optional_metrics

        self.is_main = is_main
        self.distances = {n: AudioDistances(self.sr).to(device) for n in self.chosen}
        self.per_level = LevelUsage(self.spec.codebook_size, self.total).to(device)
        extra, unavailable = optional_metrics(self.sr)
        self.extra_metrics = {name: m.to(device) for name, m in extra.items()}
        self.unavailable.update(unavailable)

    def decode(self, ids):
        return self.model.decode(ids).float().clamp(-1, 1)

    def update(self, batch: dict, x, ids, recon) -> None:
        for n, metric in self.distances.items():
            metric.update(x, recon if n == self.total else self.model.decode(ids[..., :n]).float().clamp(-1, 1))
        self.per_level.update(ids)
        # PESQ and STOI need seconds of speech: each batch's segments joined end to end, per channel
        flat_x, flat_r = x.transpose(0, 1).reshape(x.shape[1], -1), recon.transpose(0, 1).reshape(x.shape[1], -1)
        for metric in self.extra_metrics.values():
            metric.update(flat_r, flat_x)
        if self.is_main and len(self.shown) < CLIPS:  # audible segments for the picture, quiet ones only to fill
            from mmtok.modalities.audio.samples import loud

            names = batch.get("name") or [""] * x.shape[0]
            for i, ok in enumerate(loud(x)):
                (self.shown if ok else self.quiet).append((names[i], x[i].cpu(), recon[i].cpu()))
            self.shown, self.quiet = self.shown[:CLIPS], self.quiet[:CLIPS]

    def metrics(self, num_samples: int) -> dict:
        rates, unavailable = self.rates, self.unavailable
        by_levels = {}
        for n, metric in self.distances.items():
            values = metric.compute()
            by_levels[str(n)] = {"kbps": round(rates[n - 1] / 1000, 4), **{key: float(v) for key, v in values.items()}}
        full = by_levels[str(self.total)]
        metrics = {
            "mel_distance": full["mel_distance"], "stft_distance": full["stft_distance"], "si_sdr": full["si_sdr"],
            "bitrate_kbps": rates[-1] / 1000,
        }
        for name, metric in self.extra_metrics.items():
            value = float(metric.compute())
            metrics[name] = value if math.isfinite(value) else "unavailable"
            if name == "pesq" and int(metric.failed):
                unavailable["pesq_failed_segments"] = (f"{int(metric.failed)} segment(s) PESQ could not score "
                                                       "(no speech)")
        for name in ("pesq", "stoi"):
            if name in unavailable:
                metrics[name] = "unavailable"
        levels_stats = self.per_level.compute()
        usage_pct = [round(100 * float(u), 3) for u in levels_stats["usage"]]
        metrics.update({
            "codebook_usage_min_pct": min(usage_pct), "usage_per_level_pct": usage_pct,
            "perplexity_per_level": [round(float(p), 3) for p in levels_stats["perplexity"]],
            "entropy_bits_per_level": [round(float(e), 4) for e in levels_stats["entropy_bits"]],
            "by_levels": by_levels,
        })
        return metrics

    def protocol(self) -> dict:
        spec = self.spec
        return {
            "sample_rate": self.sr, "channels": int(spec["channels"]),
            "segment_seconds": self.recipe.model.segment_samples / self.sr, "frame_rate": float(spec["frame_rate"]),
            "levels": self.chosen,
            "segments": "every file cut into consecutive non-overlapping segments from its start (a file shorter "
                        "than one segment zero-padded), decoded with soundfile, mixed down and resampled with soxr",
            "distances": "DAC's mel distance (windows 32..2048, 5..320 mel bands, L1 of log10 mel clamped at 1e-5) "
                         "and STFT distance (windows 2048 and 512, L1 of log10 power + L1 of magnitude), per signal, "
                         "averaged; SI-SDR in dB, zero-mean; reconstructions clamped to [-1, 1]",
            "pesq_stoi": "all levels, on each batch's segments joined end to end (both need seconds of speech); "
                         "PESQ wide band after resampling to 16 kHz; STOI at the model's rate",
        }

    def usage_title(self, metrics: dict, counts) -> str:
        return (f"codebook usage: {metrics['codebook_used']}/{counts.numel()} codes of {counts.shape[0]} levels used "
                f"({metrics['codebook_usage_pct']:.1f}% on average, least-used level "
                f"{metrics['codebook_usage_min_pct']:.1f}%)")

    def write(self, out: Path, result: dict) -> dict[str, str]:
        import torch

        from mmtok.modalities.audio.samples import spectrogram_picture, write_clips

        kept = (self.shown + self.quiet)[:CLIPS]
        if not kept:
            return {}
        x, recon = torch.stack([k[1] for k in kept]), torch.stack([k[2] for k in kept])
        spectrogram_picture(x, recon, self.sr, out / "spectrogram.png", names=[k[0] for k in kept])
        write_clips(x, recon, self.sr, out / "clips")
        return {"spectrogram": "spectrogram.png", "clips": "clips"}

    def report(self, result: dict) -> str:
        return report_markdown(result)


def report_markdown(result: dict) -> str:
    """report.md of an audio evaluation: model, protocol, metrics per number of levels, usage per level, pictures."""
    from mmtok.evaluation.report import metric_rows, timing_line

    model, proto, m = result["model"], result["protocol"], result["metrics"]
    lines = [
        f"# Evaluation of {model.get('recipe_name')} ({model.get('path')})", "",
        f"{proto['num_samples']} segments of {proto['segment_seconds']:g} s at {proto['sample_rate']} Hz of "
        f"`{proto['data']}` ({proto['split']} split), {model['weights']} weights"
        + (f" (step {model['step']})" if model.get("step", -1) >= 0 else "")
        + f", mmtok {result['mmtok_version']}, seed {proto['seed']}, {proto['devices']} device(s) ({proto['device']}).",
        "", "| levels | kbps | mel distance | STFT distance | SI-SDR (dB) |", "|---|---|---|---|---|",
    ]
    for n, row in sorted(m["by_levels"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {n} | {row['kbps']:g} | {row['mel_distance']:.4f} | {row['stft_distance']:.4f} | "
                     f"{row['si_sdr']:.2f} |")
    shown = {"mel_distance", "stft_distance", "si_sdr"}
    lines += ["", "| metric (all levels) | value |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in metric_rows({k: v for k, v in m.items() if k not in shown})]
    lines += ["", "Usage per level (%, coarse to fine): " + ", ".join(f"{u:g}" for u in m["usage_per_level_pct"]),
              "", "Perplexity per level: " + ", ".join(f"{p:g}" for p in m["perplexity_per_level"]), ""]
    if result.get("warnings"):
        lines += ["Warnings:", ""] + [f"- {w}" for w in result["warnings"]] + [""]
    if result.get("unavailable"):
        lines += ["Unavailable:", ""] + [f"- **{k}**: {why}" for k, why in result["unavailable"].items()] + [""]
    lines += [f"Segments: {proto['segments']}. Distances: {proto['distances']}. PESQ / STOI: {proto['pesq_stoi']}. "
              f"Throughput: {proto['throughput']}.", "", f"Time: {timing_line(result.get('timing'))}.", ""]
    if model.get("note"):
        lines += [f"Note: {model['note']}", ""]
    files = result.get("files", {})
    if "spectrogram" in files:
        lines += ["## Log-mel spectrograms (originals above, reconstructions with every level below)", "",
                  f"![spectrograms]({files['spectrogram']})", "",
                  f"Clips: `{files['clips']}/clip_K_original.wav` and `clip_K_reconstruction.wav`.", ""]
    lines += ["## Codebook usage (code frequencies of every level, sorted, log scale)", "",
              f"![codebook usage]({files['usage_plot']})", ""]
    return "\n".join(lines)
