"""Probe several tokenizers on one labelled set, side by side (docs/probe.md): `mmtok eval MODEL --probe LABELLED` for
each, one table, one JSON.

Usage: python eval/probe_families.py LABELLED OUT.json NAME=MODEL [NAME=MODEL ...]
(MODEL: a run directory, checkpoint or bundle; LABELLED: a folder of class folders, e.g. from eval/labelled_photos.py).
Each model's evaluation goes where `mmtok eval` puts it by default (RUN/eval/NNN); the reconstruction part runs on
the labelled images with rFID and classifier agreement off (the probe is what is measured here).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROWS = ("tokens", "semantic", "pixels", "teacher")


def main(labelled: str, out_json: str, models: list[str]) -> dict:
    from mmtok.evaluation import evaluate

    out = Path(out_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {}
    for item in models:
        name, _, path = item.partition("=")
        r = evaluate(path, labelled, probe=labelled, rfid=False, classifier=None, num_workers=0, progress=False)
        block = r["probe"]
        results[name] = {"model": path, "eval": r["out"], "family": r["model"]["family"], "psnr": r["metrics"].get("psnr"),
                         "codebook_usage_pct": r["metrics"]["codebook_usage_pct"],
                         "bits_per_image": block["bits_per_image"], "chance": block["chance"],
                         "images": block["images"], "classes": block["classes"],
                         "features": {k: {m: v[m] for m in ("dim", "knn_top1", "linear_top1")}
                                      for k, v in block["features"].items()}}
    report = {"labelled": labelled, "protocol": block["protocol"], "models": results}
    out.write_text(json.dumps(report, indent=1))
    print(f"{'model':28s} {'bits':>6s} {'chance':>6s} " + " ".join(f"{k + ' knn/lin':>16s}" for k in ROWS))
    for name, r in results.items():
        cells = []
        for k in ROWS:
            f = r["features"].get(k)
            cells.append(f"{f['knn_top1']:.3f}/{f['linear_top1']:.3f}" if f else "-")
        print(f"{name:28s} {r['bits_per_image']:6.0f} {r['chance']:6.3f} " + " ".join(f"{c:>16s}" for c in cells))
    return report


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
