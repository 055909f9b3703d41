"""A motion run's measured table: the run evaluated by `mmtok eval` on its held-out clips and on its own training
clips, beside a mean-pose baseline (every frame reconstructed as the training Mean features), so that MPJPE numbers
have a floor to be read against.

    python eval/motion_heldout.py runs/motion_quickstart --out eval/results/motion_quickstart.json
    python eval/motion_heldout.py runs/motion_bvh --out eval/results/motion_bvh.json   # a run with data.val=holdout

Writes the JSON (per split: mpjpe_mm, pa_mpjpe_mm, accel_error_mm, codebook usage, tokens, per-clip MPJPE; the
baseline's MPJPE / PA-MPJPE on the same windows) and prints a markdown table. A run on the demo is evaluated on
'demo' (its held-out clips) and its training clips; a run on a folder with data.val=holdout on the clips that rule
held out and on the rest. Either split is read through a temporary folder of links to the clips.
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


def splits(recipe, tmp: Path) -> list[tuple[str, str]]:
    """[("held_out", source), ("train", source)] for the run's recipe, linking clips under `tmp` as needed."""
    from mmtok.data.holdout import relative_name, split_files
    from mmtok.modalities.motion.clips import find_clips
    from mmtok.modalities.motion.sources import DEMO_TRAIN, demo_dir

    d = recipe.data

    def linked(name: str, root: Path, files: list) -> str:
        for f in files:
            link = tmp / name / relative_name(f, root)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(Path(f).resolve(), link)
        return str(tmp / name)

    if d.train == "demo":
        train = [demo_dir() / f"{name}.txt" for name in DEMO_TRAIN]
        return [("held_out", "demo"), ("train", linked("train", demo_dir(), train))]
    if d.val != "holdout":
        raise SystemExit(f"the run trained on {d.train} with data.val={d.val}: evaluate it with mmtok eval directly")
    train, held = split_files(d.train, find_clips(d.train), d.holdout_fraction)
    return [("held_out", linked("held_out", Path(d.train), held)), ("train", linked("train", Path(d.train), train))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a motion run directory (motion_quickstart, motion_bvh, ...)")
    parser.add_argument("--out", default="eval/results/motion_quickstart.json")
    args = parser.parse_args()

    from mmtok.evaluation import evaluate
    from mmtok.model_io import load_model

    model, recipe, info = load_model(args.run)
    results = {"run": args.run, "step": info.get("step"), "data": recipe.data.train}
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as outs:
        for split, source in splits(recipe, Path(tmp)):
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
