"""Presenting an evaluation: metric rows, shared by the rich table of `mmtok eval`, every modality's report.md and
the bundles' model cards."""
from __future__ import annotations

import math

UNAVAILABLE = "unavailable"


def _fmt(value, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def metric_rows(m: dict) -> list[tuple[str, str]]:
    """(label, formatted value) for every metric present in a metrics dict (metrics.json["metrics"])."""
    rows = []
    table = [
        ("rfid", "rFID", ".3f"), ("psnr", "PSNR (dB)", ".2f"), ("ssim", "SSIM", ".4f"),
        ("lpips_vgg", "LPIPS (VGG)", ".4f"), ("lpips_alex", "LPIPS (AlexNet)", ".4f"),
        ("classifier_agreement", "classifier top-1 agreement", ".3f"), ("semantic_cosine", "semantic cosine", ".4f"),
        ("probe_knn_top1", "probe k-NN top-1 (tokens)", ".3f"),
        ("probe_linear_top1", "probe linear top-1 (tokens)", ".3f"),
    ]
    for key, label, spec in table:
        if key in m:
            rows.append((label, _fmt(m[key], spec) + _rfid_flag(m) if key == "rfid" else _fmt(m[key], spec)))
    if "codebook_usage_pct" in m:
        books = m.get("num_codebooks", 1)
        if books == 1:
            rows.append(("codebook usage", f"{m['codebook_usage_pct']:.1f}% ({m.get('codebook_used')}/"
                                           f"{m.get('codebook_size')})"))
        else:  # several codebooks (residual levels): say which number is an average and which a single level
            rows.append((f"codebook usage, mean of the {books} levels", f"{m['codebook_usage_pct']:.1f}% "
                         f"({m.get('codebook_used')} of {books} x {m.get('codebook_size')} codes)"))
        if "codebook_usage_min_pct" in m:
            rows.append(("codebook usage, least-used level", f"{m['codebook_usage_min_pct']:.1f}%"))
    if "codebook_perplexity" in m:
        rows.append(("codebook perplexity", f"{m['codebook_perplexity']:.1f}"))
    if "codebook_entropy_bits" in m:
        top = m.get("codebook_entropy_max_bits")
        rows.append(("codebook entropy (bits)", f"{m['codebook_entropy_bits']:.2f}" + (f" / {top:.2f}" if top else "")))
    if "tokens_per_sample" in m:
        rows.append(("tokens per sample", _fmt(m["tokens_per_sample"], "g")))
    for key, label in (("encode_samples_per_s", "encode (samples/s)"), ("decode_samples_per_s", "decode (samples/s)")):
        if key in m:
            rows.append((label, _fmt(m[key], ".1f")))
    shown = {key for key, _, _ in table} | _SHOWN_INSIDE
    for key, value in m.items():  # another modality's metrics: by name, in the evaluator's order
        if key not in shown and isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append((key, _fmt(value, ".4g")))
    return rows


# keys shown as part of the rows above (or flags about them), not as rows of their own
_SHOWN_INSIDE = {"codebook_usage_pct", "codebook_usage_min_pct", "codebook_used", "codebook_size", "num_codebooks", "codebook_perplexity",
                 "codebook_entropy_bits", "codebook_entropy_max_bits", "tokens_per_sample", "encode_samples_per_s",
                 "decode_samples_per_s", "rfid_reliability", "rfid_num_images"}


def _rfid_flag(m: dict) -> str:
    """" (NOT MEANINGFUL: 12 images)" after an rFID from too few images, else ""."""
    from mmtok.modalities.image.fid_protocol import rfid_label

    n = m.get("rfid_num_images")
    label = rfid_label(int(n)) if isinstance(n, int) and isinstance(m.get("rfid"), float) else None
    return f" ({label})" if label else ""


PROBE_ROLES = {"tokens": "the tokens' code vectors", "semantic": "the tokens' semantic embedding",
               "pixels": "floor: pixels 16x16", "teacher": "ceiling: the frozen teacher"}


def probe_rows(block: dict) -> list[tuple[str, str, str, str]]:
    """(features, dims, k-NN top-1, linear top-1) of a probe block (metrics.json["probe"]), chance last."""
    rows = [(PROBE_ROLES.get(name, name), str(r["dim"]), f"{r['knn_top1']:.3f}", f"{r['linear_top1']:.3f}")
            for name, r in block["features"].items()]
    return rows + [("chance (majority class)", "-", f"{block['chance']:.3f}", f"{block['chance']:.3f}")]


def probe_markdown(block: dict) -> list[str]:
    """The probe's table and protocol as markdown lines (report.md, model cards)."""
    lines = [f"{block['images']} labelled images of `{block['data']}` in {len(block['classes'])} classes, "
             f"{block['folds']}-fold cross-validation; the tokens carry {block['bits_per_image']:.0f} bits per image.",
             "",
             "| features | dims | k-NN top-1 | linear top-1 |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in probe_rows(block)]
    lines += ["", f"Protocol: {block['protocol']}."]
    for name, why in block.get("unavailable", {}).items():
        lines.append(f"- {name}: {why}")
    if block.get("skipped"):
        lines.append(f"- skipped ({len(block['skipped'])}): " + "; ".join(block["skipped"])[:1000])
    return lines


def timing_line(timing: dict | None) -> str:
    """Where an evaluation spent its time, one line (metrics.json["timing"]): the parts by seconds, largest first,
    each metric inside "metrics"; "" without timing."""
    if not timing:
        return ""
    s = timing["seconds"]
    inner = sorted(((k.split("/", 1)[1], v) for k, v in s.items() if k.startswith("metrics/")), key=lambda kv: -kv[1])
    parts = []
    for key, value in sorted(((k, v) for k, v in s.items() if "/" not in k), key=lambda kv: -kv[1]):
        detail = f" ({', '.join(f'{n} {v:.1f}' for n, v in inner)})" if key == "metrics" and inner else ""
        parts.append(f"{key} {value:.1f} s{detail}")
    return f"{timing['total_s']:.1f} s for {timing['samples']} samples: " + ", ".join(parts)
