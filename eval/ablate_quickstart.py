"""Where the quick start's quality per training budget comes from: variants of `mmtok train quickstart` and the
peer composite (eval/llamagen_peer.py), trained one after the other on a photographs-only training folder and
scored on its development folder (never the report folder: that one is for eval/compare_llamagen.py, once).

    python eval/photos.py photos --photographs
    python eval/ablate_quickstart.py --train photos/train --dev photos/dev --llamagen /path/to/LlamaGen \\
        [--only NAME ...] [--samples 4800]

Each variant trains for `--samples` images (steps = samples / batch; the cosine schedule spans them), or, with
`seconds`, until that much wall time has passed; its training time, images per second and its development PSNR
(eval/compare_llamagen.py's protocol: shorter side 64, centre crop, mean per-image PSNR) are one row. mmtok runs
are scored with their EMA weights and, beside them, their raw weights (one training, two rows). Results are merged
into eval/results/quickstart_ablation_dev.json (a variant run again replaces its row), and the table is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_llamagen import as_tokenizer, evaluate, load_heldout, run_mmtok, run_peer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "quickstart_ablation_dev.json"
LLAMAGEN_LAYOUT = ["model.ch=32", "model.ch_mult=[1,2,2,4]"]  # the peer's widths and levels in mmtok's VQGAN
PEER_QUANTIZER = ["model.quantizer.ema_decay=0.8", "model.quantizer.restart_after=0"]  # vector-quantize-pytorch's
# name -> (recipe overrides, batch) for mmtok, or "peer" with its batch and learning rate
VARIANTS = {
    "shipped": ([], 8),
    "batch 16": ([], 16),
    "LlamaGen layout": (LLAMAGEN_LAYOUT, 8),
    "LlamaGen layout, equal FLOPs": (["model.ch=24", "model.ch_mult=[1,2,2,4]"], 8),  # 1.07 vs 0.92 GFLOPs, 1.7M
    "LlamaGen layout, batch 16": (LLAMAGEN_LAYOUT, 16),
    "lr 4e-4 constant": (["optim.lr=4e-4", "optim.warmup_steps=0", "optim.min_lr_ratio=1.0"], 8),
    "lr 1e-3": (["optim.lr=1e-3"], 8),
    "no warmup": (["optim.warmup_steps=0"], 8),
    "no rotation trick": (["model.quantizer.gradient=ste"], 8),
    "codebook EMA 0.8": (["model.quantizer.ema_decay=0.8"], 8),
    "no revival": (["model.quantizer.restart_after=0"], 8),
    "no k-means": (["model.quantizer.kmeans_init=false"], 8),
    "peer's crops": ([], 8),  # see peer_crops
    "crops 0.8": (["model.min_crop_fraction=0.8"], 8),  # the same crops in mmtok's folder stream, with its cache
    "crops 0.8, batch 16": (["model.min_crop_fraction=0.8"], 16),
    "peer": ("peer", 16),
}


def peer_crops() -> None:
    """Training crops as LlamaGen's random_crop_arr makes them: the shorter side resized to a random size in
    [R, R / 0.8] (64..80 at R 64), then a random R x R crop (and mirror); patched into the folder stream for this
    process and its forked loader workers, without the resized-copy cache (the size differs on every pass)."""
    from PIL import Image

    from mmtok.modalities.image import folder
    from mmtok.modalities.image.decode import pil_to_uint8, resize_shorter

    def crops(img, r, *, random_crop, rng, flip=False):
        img = resize_shorter(img, round(rng.uniform(r, r / 0.8)))
        x, y = rng.randint(0, img.width - r), rng.randint(0, img.height - r)
        img = img.crop((x, y, x + r, y + r))
        return pil_to_uint8(img.transpose(Image.FLIP_LEFT_RIGHT) if flip and rng.random() < 0.5 else img)

    folder.CACHE_BYTES = 0
    folder.resize_shorter = lambda img, r: img
    folder.image_to_uint8 = crops


def run_variant(name: str, args, images: torch.Tensor, work: Path) -> list[dict]:
    sets, batch = VARIANTS[name]
    steps = max(1, round(args.samples / batch))
    if sets == "peer":
        tok, facts = run_peer(args.llamagen, args.train, args.seconds or 1e9, max_steps=None if args.seconds else steps,
                              batch_size=batch, seed=args.seed, log=lambda *a: None)
        return [_row(name, "raw", facts, evaluate(tok, images, facts["codebook_size"]))]
    from mmtok.model_io import load_model

    if name == "peer's crops":
        peer_crops()
    run = work / f"{name}_{args.samples}_{args.seed}".replace(" ", "_").replace(",", "").replace("'", "")
    ema_tok, facts = run_mmtok(args.train, run, args.seconds or 1e6, steps=steps, seed=args.seed,
                               sets=[f"data.batch_size={batch}", "trainer.ckpt_every=100000", *sets])
    rows = [_row(name, "ema", facts, evaluate(ema_tok, images, facts["codebook_size"]))]
    model, _, info = load_model(run, ema=False)
    rows.append(_row(name, info["weights"], facts, evaluate(as_tokenizer(model), images, facts["codebook_size"])))
    return rows


def _row(name: str, weights: str, facts: dict, scores: dict) -> dict:
    scores.pop("_recon", None)
    samples = facts["steps"] * facts["batch_size"]
    return {"variant": name, "samples": samples, "images_per_s": round(samples / facts["train_seconds"], 1),
            **facts, **scores, "weights": weights}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--llamagen", help="a local LlamaGen checkout (the peer's variant needs it)")
    ap.add_argument("--samples", type=int, default=4800, help="training images per variant")
    ap.add_argument("--seconds", type=float, help="train each variant for this wall time instead of --samples")
    ap.add_argument("--only", nargs="+", choices=list(VARIANTS), help="run these variants (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="runs/ablate_quickstart")
    ap.add_argument("--json", default=str(RESULTS))
    args = ap.parse_args(argv)
    images, names = load_heldout(args.dev)
    out = Path(args.json)
    report = json.loads(out.read_text()) if out.is_file() else {"rows": []}
    budget = f"{args.seconds:g} s" if args.seconds else f"{args.samples} samples"
    for name in args.only or list(VARIANTS):
        if name == "peer" and not args.llamagen:
            continue
        rows = run_variant(name, args, images, Path(args.work))
        for r in rows:
            r.update(budget=budget, seed=args.seed, finished=time.strftime("%Y-%m-%d %H:%M:%S"),
                     load_average=[round(x, 2) for x in os.getloadavg()])
        key = (name, budget, args.seed)
        report["rows"] = [r for r in report["rows"] if (r["variant"], r["budget"], r["seed"]) != key]
        report["rows"] += rows
        report.update(train=args.train, dev=args.dev, dev_images=names, torch=torch.__version__,
                      threads=torch.get_num_threads())
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        for r in rows:
            print(f"{r['variant']:<22}{r['weights']:>5}{r['budget']:>14}{r['steps']:>6}{r['batch_size']:>4}"
                  f"{r['train_seconds']:>8.0f} s{r['images_per_s']:>7.1f} img/s{r['psnr_db']:>8.2f} dB"
                  f"{100 * r['usage']:>7.1f}%", flush=True)


if __name__ == "__main__":
    main()
