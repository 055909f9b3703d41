"""The motion quick start's measured table: a trained run evaluated by `mmtok eval` on the held-out demo clips and
on its own training clips, beside a mean-pose baseline (every frame reconstructed as the training Mean features),
so that MPJPE numbers have a floor to be read against.

    python eval/motion_heldout.py runs/motion_quickstart --out eval/results/motion_quickstart.json

Writes the JSON (per split: mpjpe_mm, pa_mpjpe_mm, accel_error_mm, codebook usage, tokens, per-clip MPJPE; the
baseline's MPJPE / PA-MPJPE on the same windows) and prints a markdown table. The training clips are read through
a temporary folder of links to pybullet's files (mmtok.modalities.motion.sources.DEMO_TRAIN).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch


def mean_pose_baseline(model, source: str) -> dict:
    """MPJPE / PA-MPJPE (mm) of reconstructing every window of the val split of `source` as the model's Mean."""
    from mmtok.data import make_loader
    from mmtok.metrics.motion import mpjpe, pa_mpjpe
    from mmtok.modalities.motion.recover import recover_joints

    loader = make_loader(source, "val", model.cfg, batch_size=64, num_workers=0, modality="motion")
    errs, pa = [], []
    for batch in loader:
        x = batch["motion"]
        real = recover_joints(x, model.layout)
        fake = recover_joints(model.mean.expand_as(x), model.layout)
        errs.append(mpjpe(fake, real).flatten())
        pa.append(pa_mpjpe(fake, real).flatten())
    return {"mpjpe_mm": float(torch.cat(errs).mean()), "pa_mpjpe_mm": float(torch.cat(pa).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory of motion_quickstart")
    parser.add_argument("--out", default="eval/results/motion_quickstart.json")
    args = parser.parse_args()

    from mmtok.modalities.motion.sources import DEMO_TRAIN, demo_dir
    from mmtok.evaluation import evaluate
    from mmtok.model_io import load_model

    model, _, info = load_model(args.run)
    results = {"run": args.run, "step": info.get("step")}
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as outs:
        for name in DEMO_TRAIN:
            link = Path(tmp) / f"{name}.txt"
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(demo_dir() / f"{name}.txt", link)
        for split, source in (("held_out", "demo"), ("train", tmp)):
            r = evaluate(args.run, source, out=Path(outs) / split, num_workers=0, progress=False)
            keep = ("mpjpe_mm", "pa_mpjpe_mm", "accel_error_mm", "codebook_usage_pct", "codebook_used",
                    "codebook_perplexity")
            results[split] = {**{k: r["metrics"][k] for k in keep}, "windows": r["protocol"]["num_samples"],
                              "tokens": r["protocol"]["num_samples"] * int(r["metrics"]["tokens_per_sample"]),
                              "per_clip": r["per_clip"], "baseline_mean_pose": mean_pose_baseline(model, source)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print("| clips | windows | tokens | MPJPE (mm) | PA-MPJPE (mm) | accel (mm/frame^2) | codes used | "
          "mean-pose MPJPE / PA-MPJPE |")
    print("|---|---|---|---|---|---|---|---|")
    for split in ("held_out", "train"):
        r = results[split]
        b = r["baseline_mean_pose"]
        print(f"| {split.replace('_', '-')} | {r['windows']} | {r['tokens']} | {r['mpjpe_mm']:.1f} | "
              f"{r['pa_mpjpe_mm']:.1f} | {r['accel_error_mm']:.1f} | {r['codebook_used']} "
              f"({r['codebook_usage_pct']:.1f}%) | {b['mpjpe_mm']:.1f} / {b['pa_mpjpe_mm']:.1f} |")


if __name__ == "__main__":
    main()
