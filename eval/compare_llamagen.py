"""Quality per training budget: mmtok's quick start against a peer composite, same photographs, at equal wall time
and at equal samples.

The peer: LlamaGen's VQ model with vector-quantize-pytorch's quantizer (cosine codes, k-means init, EMA,
dead-code expiry, rotation trick), lr 4e-4, batch 16, L2 + commitment loss (eval/llamagen_peer.py).

    apt-get install opencv-doc lomiri-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds
    git clone https://github.com/FoundationVision/LlamaGen /path/to/LlamaGen      # anywhere outside this repo
    python eval/compare_llamagen.py --llamagen /path/to/LlamaGen                  # reports on photographs/report
    python eval/compare_llamagen.py --llamagen /path/to/LlamaGen --split dev      # what settings are tuned on

Photographs: `eval/photos.py --photographs` (real photographs only, no cut-outs or drawings; train 35, dev 7,
report 12, near-duplicates kept on one side); models train on train/ and are scored on --split (report by default:
run it once, after choosing settings on dev). `--mixed` uses the older selection instead (229 train / 58 held out,
47 of the 58 Tux Paint cut-outs on white), `--train DIR --heldout DIR` folders of your own.

Budget: mmtok trains first, as the quick start ships (`mmtok train quickstart --data TRAIN --set data.val=null`,
its own schedule; `--mmtok-steps N` sets another length); then the peer twice: for as much wall time as mmtok took
(`--seconds` gives another) and for as many training images as mmtok saw (`--no-equal-samples` skips that run).
Every run uses the same data loader (mmtok's folder stream: shorter side resized to 64, random 64 x 64 crop, random
mirror, one worker) and none validates inside its budget. mmtok is scored with its EMA weights, as `mmtok eval` and
`mmtok export` use them; the peer with its raw weights (LlamaGen keeps no EMA copy).

Protocol, one function for both (`evaluate`): every image of the held-out folder, shorter side resized to
64 (bicubic, antialiased), centre crop 64 x 64 (mmtok.modalities.image.decode.resize_and_crop), pixels
v / 255 in [0, 1]; the model gets v / 127.5 - 1 in [-1, 1]; its output is clamped to [-1, 1] and mapped back to [0, 1];
PSNR of each image = 10 log10(1 / MSE) over its 3 x 64 x 64 values (data range 1); the table shows the
mean over images. Codebook usage: distinct codes over the whole held-out set / codebook size.

Writes eval/results/compare_llamagen_SPLIT.json (every number, the settings, the machine) and a .png beside it
(held-out inputs, then each run's reconstructions).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from llamagen_peer import PEER_DEFAULTS, VQ_MODEL_FILE, VQ_OPTIONS, PeerTokenizer, build_peer, train_peer  # noqa: E402
from photos import collect_photographs, collect_photos  # noqa: E402

from mmtok.modalities.image.decode import find_images, pil_to_uint8, read_image, resize_and_crop  # noqa: E402

RESOLUTION = 64
RESULTS = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------------------------------------ protocol


def load_heldout(folder: str | Path, resolution: int = RESOLUTION) -> tuple[torch.Tensor, list[str]]:
    """Every image under `folder` (sorted), shorter side resized to `resolution`, centre-cropped:
    (uint8 [N, 3, R, R], file names). An undecodable file is an error (held-out sets are small and chosen)."""
    files = find_images(folder)
    if not files:
        raise FileNotFoundError(f"no images under {folder}")
    crops = [pil_to_uint8(resize_and_crop(read_image(f), resolution, random_crop=False)) for f in files]
    return torch.stack(crops), [f.name for f in files]


def psnr_per_image(images: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each reconstruction: images uint8 [B, 3, H, W]; recon float [B, 3, H, W] in [-1, 1]
    (clamped); both compared in [0, 1] (data range 1). Returns float64 [B]."""
    x = images.double() / 255.0
    y = (recon.double().clamp(-1, 1) + 1) / 2
    mse = (x - y).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


@torch.no_grad()
def evaluate(tokenizer, images: torch.Tensor, codebook_size: int, batch_size: int = 32) -> dict:
    """The protocol (module docstring) for `tokenizer(x [B, 3, R, R] in [-1, 1]) -> (recon, ids)`."""
    psnr, codes = [], set()
    recons = []
    for i in range(0, len(images), batch_size):
        chunk = images[i:i + batch_size]
        recon, ids = tokenizer(chunk.float() / 127.5 - 1.0)
        psnr.append(psnr_per_image(chunk, recon))
        codes.update(ids.reshape(-1).tolist())
        recons.append(recon.clamp(-1, 1))
    p = torch.cat(psnr)
    return {"psnr_db": round(p.mean().item(), 3), "psnr_std_db": round(p.std().item(), 3) if len(p) > 1 else 0.0,
            "usage": round(len(codes) / codebook_size, 4), "codes_used": len(codes),
            "codebook_size": codebook_size, "images": len(p), "_recon": torch.cat(recons)}


# ------------------------------------------------------------------------------------------------ the two sides


def run_mmtok(train_dir, run_dir, seconds: float | None = None, *, steps: int | None = None, sets=(), seed: int = 0,
              threads: int | None = None) -> tuple[object, dict]:
    """Train the quick start on `train_dir` (for at most `seconds`; its recipe's time limit otherwise); returns
    (tokenizer for `evaluate`, facts)."""
    from mmtok import config
    from mmtok.model_io import load_model
    from mmtok.train.run import train

    overrides = [f"data.train={train_dir}", "data.val=null", f"seed={seed}",
                 *([f"trainer.max_minutes={seconds / 60:.6g}"] if seconds else []),
                 *([f"trainer.max_steps={steps}"] if steps else []),
                 *([f"trainer.threads={threads}"] if threads else []), *sets]
    recipe = config.load("quickstart", overrides)
    if Path(run_dir).exists():
        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    summary = train(recipe, run_dir)
    wall = time.perf_counter() - t0
    model, _, info = load_model(run_dir)
    q = recipe.model.quantizer
    facts = {"steps": summary["step"], "train_seconds": summary["seconds"], "wall_seconds": round(wall, 1),
             "stopped_by": "steps" if summary["step"] >= recipe.trainer.max_steps else "time",
             "batch_size": recipe.data.batch_size, "lr": recipe.optim.lr, "weights": info["weights"],
             "params": sum(p.numel() for p in model.parameters()), "overrides": overrides,
             "codebook_size": q.codebook_size}
    return as_tokenizer(model), facts


def as_tokenizer(model):
    """An mmtok model as `evaluate` calls it: x -> (reconstructions, ids)."""

    def tokenizer(x):
        out = model(x)
        return out.recon, out.ids

    return tokenizer


def run_peer(llamagen, train_dir, seconds: float, *, seed: int = 0, max_steps: int | None = None,
             batch_size: int = 16, lr: float = 4e-4, threads: int | None = None, log=print) -> tuple[object, dict]:
    """Train the peer composite on `train_dir` for `seconds`; returns (tokenizer for `evaluate`, facts)."""
    from mmtok.data import make_loader

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = build_peer(llamagen)
    loader = make_loader(str(train_dir), "train", RESOLUTION, batch_size=batch_size, num_workers=1, seed=seed)

    def progress(step, loss, elapsed):
        if step % 50 == 0:
            log(f"peer step {step}: loss {loss:.4f}, {elapsed:.0f} s")

    t0 = time.perf_counter()
    result = train_peer(model, loader, seconds=seconds, lr=lr, max_steps=max_steps, on_step=progress)
    wall = time.perf_counter() - t0
    file = Path(llamagen) if Path(llamagen).is_file() else Path(llamagen) / VQ_MODEL_FILE
    facts = {"steps": result["steps"], "train_seconds": result["seconds"], "wall_seconds": round(wall, 1),
             "stopped_by": "steps" if max_steps and result["steps"] >= max_steps else "time",
             "batch_size": batch_size, "lr": lr, "weights": "raw (LlamaGen trains without an EMA copy)",
             "params": sum(p.numel() for p in model.parameters()), "final_train_loss": result["loss"],
             "model": {k: list(v) if isinstance(v, tuple) else v for k, v in PEER_DEFAULTS.items()},
             "vector_quantize": VQ_OPTIONS, "llamagen_vq_model_sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
             "codebook_size": PEER_DEFAULTS["codebook_size"]}
    return PeerTokenizer(model.eval()), facts


# ------------------------------------------------------------------------------------------------ output


def write_grid(path: Path, images: torch.Tensor, recons: dict[str, torch.Tensor], n: int = 8, scale: int = 2) -> None:
    """Row 1: `n` held-out inputs spread over the (sorted) set; then one row per side's reconstructions of
    them; cells scaled up `scale` times."""
    from PIL import Image

    pick = torch.linspace(0, len(images) - 1, min(n, len(images))).round().long().unique()
    rows = [images[pick]] + [((r[pick] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8) for r in recons.values()]
    cell = images.shape[-1] * scale
    grid = Image.new("RGB", (cell * len(pick), cell * len(rows)), "white")
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            tile = Image.fromarray(img.permute(1, 2, 0).numpy()).resize((cell, cell), Image.NEAREST)
            grid.paste(tile, (c * cell, r * cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def print_table(results: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("model", "steps", "batch", "images", "train s", "lr", "PSNR (dB)", "codebook usage", "params"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in results.values():
        if "skipped" in r:
            table.add_row(r["label"], "-", "-", "-", "-", "-", f"skipped: {r['skipped']}", "-", "-")
            continue
        table.add_row(r["label"], str(r["steps"]), str(r["batch_size"]), str(r["steps"] * r["batch_size"]),
                      f"{r['train_seconds']:.0f}", f"{r['lr']:g}", f"{r['psnr_db']:.2f} +- {r['psnr_std_db']:.2f}",
                      f"{100 * r['usage']:.1f}% of {r['codebook_size']}", f"{r['params'] / 1e6:.2f}M")
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)  # a log file: no wrapping at 80 columns
    console.print(table)


def photo_folders(args) -> tuple[Path, Path, dict | None]:
    """(train folder, scored folder, what was collected) for the command line's choice of photographs."""
    if args.train:
        return Path(args.train), Path(args.heldout), None
    work = Path(args.work)
    if args.mixed:
        m = collect_photos(work / "photos", heldout_fraction=0.2)
        return work / "photos" / "train", work / "photos" / "heldout", {"selection": "mixed", "counts": m["counts"]}
    m = collect_photographs(work / "photographs")
    return work / "photographs" / "train", work / "photographs" / args.split, {
        "selection": "photographs", "split": args.split, "counts": m["counts"],
        "manifest": str(work / "photographs" / "manifest.json")}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llamagen", help="a local LlamaGen checkout (or its vq_model.py); without it the peer is skipped")
    ap.add_argument("--split", choices=["report", "dev"], default="report",
                    help="which photographs-only folder scores the runs (report: once, after tuning on dev)")
    ap.add_argument("--mixed", action="store_true", help="the older photo selection (train / heldout, with cut-outs)")
    ap.add_argument("--train", help="a training folder of your own (with --heldout)")
    ap.add_argument("--heldout", help="the folder that scores the runs (with --train)")
    ap.add_argument("--work", default="runs/compare_llamagen", help="photos and run directories go here")
    ap.add_argument("--seconds", type=float, help="the peer's wall-time budget (default: what mmtok's training took)")
    ap.add_argument("--no-equal-samples", action="store_true", help="skip the peer's run at mmtok's training images")
    ap.add_argument("--mmtok-steps", type=int, help="the quick start's max_steps (cosine schedule length)")
    ap.add_argument("--mmtok-set", action="append", default=[], help="extra recipe override (repeatable)")
    ap.add_argument("--peer-batch", type=int, default=16)
    ap.add_argument("--sides", default="mmtok,peer", help="which sides to run: mmtok, peer or both")
    ap.add_argument("--threads", type=int, help="torch CPU threads for both sides (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="where to write the results (default: eval/results/compare_llamagen_SPLIT.json)")
    args = ap.parse_args(argv)
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not set(sides) <= {"mmtok", "peer"} or not sides:
        ap.error("--sides takes mmtok, peer or mmtok,peer")
    if bool(args.train) != bool(args.heldout):
        ap.error("--train and --heldout go together")
    if "mmtok" not in sides and not args.seconds:
        ap.error("without the mmtok side, --seconds gives the peer's budget")
    train_dir, heldout_dir, photos = photo_folders(args)
    images, names = load_heldout(heldout_dir)
    load_at_start = _load()
    if load_at_start and load_at_start[0] > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load_at_start[0]} on {os.cpu_count()} CPUs: other work is running, so "
              "each side gets less CPU than its budget says and the comparison is contaminated")
    print(f"train: {len(find_images(train_dir))} images in {train_dir}; scored: {len(images)} in {heldout_dir}")

    results, recons = {}, {}

    def score(key, label, tok, facts):
        scores = evaluate(tok, images, facts["codebook_size"])
        recons[key] = scores.pop("_recon")
        results[key] = {"label": label, **facts, **scores}

    seconds, samples = args.seconds, None
    if "mmtok" in sides:
        tok, facts = run_mmtok(train_dir, Path(args.work) / "mmtok", steps=args.mmtok_steps, sets=args.mmtok_set,
                               seed=args.seed, threads=args.threads)
        score("mmtok", "mmtok quick start", tok, facts)
        seconds, samples = seconds or facts["train_seconds"], facts["steps"] * facts["batch_size"]
    if "peer" in sides:
        label = f"LlamaGen VQ + vector-quantize-pytorch, batch {args.peer_batch}"
        if not args.llamagen:
            results["peer"] = {"label": label, "skipped": "no --llamagen PATH given"}
        else:
            tok, facts = run_peer(args.llamagen, train_dir, seconds, seed=args.seed, batch_size=args.peer_batch,
                                  threads=args.threads)
            score("peer_equal_time", f"{label}, equal time", tok, facts)
            if samples and not args.no_equal_samples:
                tok, facts = run_peer(args.llamagen, train_dir, 1e9, seed=args.seed, batch_size=args.peer_batch,
                                      max_steps=math.ceil(samples / args.peer_batch), threads=args.threads)
                score("peer_equal_samples", f"{label}, equal images", tok, facts)
    where = f"{heldout_dir.name} ({len(images)} photos)"
    print_table(results, f"scored on {where}, 64 x 64; peer at mmtok's time ({seconds or 0:.0f} s) and images")
    report = {
        "protocol": {"resolution": RESOLUTION, "resize": "shorter side to 64, bicubic antialiased, centre crop",
                     "psnr": "per image on [0, 1], data range 1, mean over images", "heldout_images": names},
        "equal_time_seconds": seconds, "equal_images": samples, "train_dir": str(train_dir),
        "heldout_dir": str(heldout_dir), "photos": photos, "results": results, "seed": args.seed,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "load_average_at_start": load_at_start,
                    "load_average_at_end": _load(),
                    "vector_quantize_pytorch": _version("vector-quantize-pytorch")},
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    name = "mixed" if args.mixed else ("custom" if args.train else args.split)
    out = Path(args.json or RESULTS / f"compare_llamagen_{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if recons:
        write_grid(out.with_suffix(".png"), images, recons)
    print(f"results: {out}" + (f"; reconstructions: {out.with_suffix('.png')}" if recons else ""))
    return report


def _load():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _version(dist: str):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
