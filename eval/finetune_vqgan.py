"""Fine-tuning a trained tokenizer on one's own photos with `init.path` (README "Fine-tuning"): the quick start's
VQGAN, trained on the built-in photos, is fine-tuned for STEPS steps on a folder of other photos, and the
held-out PSNR of that folder's disjoint held-out part is measured before and after, by `mmtok eval` on both.

    python eval/finetune_vqgan.py --start runs/quickstart [--photos runs/compare_llamagen/photos] [--steps 100]

--photos holds train/ and heldout/ (eval/photos.py builds them from Debian packages; never used to tune
anything here). Writes eval/results/finetune_vqgan.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", required=True, help="the run (or bundle) to start from: the quick start's VQGAN")
    ap.add_argument("--photos", default="runs/compare_llamagen/photos", help="folder with train/ and heldout/")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--work", default="runs/finetune_vqgan")
    ap.add_argument("--out", default=str(HERE / "results" / "finetune_vqgan.json"))
    args = ap.parse_args()

    from mmtok import config
    from mmtok.evaluation import evaluate
    from mmtok.train.run import train

    photos, work = Path(args.photos), Path(args.work)
    heldout = str(photos / "heldout")
    opts = dict(batch_size=16, num_workers=1, rfid=False, classifier=None, progress=False, force=True)
    before = evaluate(args.start, heldout, out=work / "eval_before", **opts)["metrics"]
    recipe = config.load("quickstart", [
        f"init.path={args.start}", f"data.train={photos / 'train'}", "data.val=null",
        f"trainer.max_steps={args.steps}", "trainer.max_minutes=null", "optim.lr=5e-4", "optim.warmup_steps=10",
        "trainer.ckpt_every=50"])
    t0 = time.perf_counter()
    train(recipe, work / "run")
    seconds = time.perf_counter() - t0
    after = evaluate(work / "run", heldout, out=work / "eval_after", **opts)["metrics"]
    n_train = sum(1 for p in (photos / "train").rglob("*") if p.is_file())
    n_held = sum(1 for p in (photos / "heldout").rglob("*") if p.is_file())
    result = {
        "start": str(args.start), "photos": str(photos), "train_images": n_train, "heldout_images": n_held,
        "steps": args.steps, "seconds": round(seconds, 1),
        "before": {k: before[k] for k in ("psnr", "ssim", "codebook_usage_pct")},
        "after": {k: after[k] for k in ("psnr", "ssim", "codebook_usage_pct")},
        "command": "python eval/finetune_vqgan.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"| weights | held-out PSNR (dB) | SSIM | usage (%) |\n|---|---|---|---|")
    for name in ("before", "after"):
        m = result[name]
        label = "quick start (built-in photos)" if name == "before" else f"+ {args.steps} steps on {photos / 'train'}"
        print(f"| {label} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['codebook_usage_pct']:.1f} |")
    print(f"{n_held} held-out photos of {photos}; fine-tuning took {seconds:.0f} s; -> {args.out}")


if __name__ == "__main__":
    main()
