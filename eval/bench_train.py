"""Training throughput benchmark: steps/s, images/s and peak memory of real training steps.

Runs the generic task's training step (generator + discriminator when the recipe has one) on synthetic
batches, so the numbers measure the model and losses, not the data loader.

    python eval/bench_train.py                         # CPU: quickstart and VQ-16 at a size that fits
    python eval/bench_train.py --device cuda           # GPU: adds VQ-16 at 256x256 in bf16
    python eval/bench_train.py --device cuda --recipe llamagen_vq16 --batch 16 --lookup torch
                                                       # one case; the nearest-code search forced to a backend

--lookup picks the backend of every nearest-code search the VQ quantizers make (mmtok.quantize.lookup):
"auto" (the default: the fused Triton kernel on CUDA, chunked torch elsewhere), "triton" (the kernel, an error
if it cannot run; on CPU only under TRITON_INTERPRET=1) or "torch". It is applied by rebinding the `nearest`
that mmtok.quantize.vq calls, for this process only.

Prints a table and writes eval/results/bench_train_<device>.json (or --json PATH).

--loops FOLDER measures whole training loops instead, on real images from FOLDER (the folder stream, one loader
worker, as `mmtok train --data FOLDER` reads it), images per second over steps 10..N, data loading included:

    python eval/bench_train.py --loops photos/train [--llamagen /path/to/LlamaGen]

  mmtok train   `mmtok train quickstart` itself (Lightning, the EMA copy of the weights, the logged metrics, the
                progress line, checkpoints every 100 steps; no validation)
  plain loop    the same model, loss and optimizer in a bare PyTorch loop (forward, loss, backward, clip, Adam step),
                as the peer trains: what Lightning, EMA weights, metrics and logging cost per step is the gap
  peer loop     eval/llamagen_peer.py: LlamaGen's VQ model with vector-quantize-pytorch's quantizer in its own loop
                (with --llamagen), at the same batch
  decode        first, what one loader worker would do per image without the folder stream's resized copy: read,
                decode, resize, crop every file three times, in this process
Each loop runs --loop-steps steps at batch --batch (default 8 and 16, one row each), one after the other.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

from mmtok import config

CASES = {
    "cpu": [
        ("quickstart", [], 8),
        ("sde_quickstart", [], 8),
        ("tokenflow_quickstart", [], 8),
        ("llamagen_vq16", ["model.resolution=128", "loss.weights.perceptual=0", "loss.gan.start_step=0"], 2),
    ],
    "cuda": [
        ("quickstart", [], 8),
        ("sde_quickstart", [], 8),
        ("tokenflow_quickstart", [], 8),
        ("llamagen_vq16", ["loss.perceptual.allow_untrained=true", "loss.gan.start_step=0"], 16),
    ],
}


def use_lookup(backend: str) -> None:
    """Make every nearest-code search of the VQ quantizers use `backend` ("auto" leaves them as they are)."""
    import functools

    from mmtok.quantize import lookup, vq

    vq.nearest = lookup.nearest if backend == "auto" else functools.partial(lookup.nearest, backend=backend)


def bench(name: str, overrides: list[str], batch: int, device: str, steps: int, warmup: int,
          precision: str | None = None) -> dict:
    import lightning as L

    from mmtok.train.task import TokenizerTask

    precision = precision or ("bf16-mixed" if device == "cuda" else "32-true")
    recipe = config.load(name, overrides + [f"data.batch_size={batch}", f"trainer.max_steps={steps + warmup}",
                                            f"trainer.precision={precision}"])
    task = TokenizerTask(recipe)
    r = recipe.model.resolution
    images = torch.rand(batch, 3, r, r) * 2 - 1
    times: list[float] = []

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if device == "cuda":
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t)

    loader = torch.utils.data.DataLoader([{"image": images}] * (steps + warmup), batch_size=None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer = L.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, precision=precision,
                        max_steps=steps + warmup, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Timer()])
    trainer.fit(task, train_dataloaders=loader)
    step_s = sorted(times[warmup:])[len(times[warmup:]) // 2]
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    params = sum(p.numel() for p in task.tokenizer.parameters())
    return {"recipe": name, "overrides": overrides, "resolution": r, "batch": batch, "precision": precision,
            "params_M": round(params / 1e6, 2), "median_step_s": round(step_s, 4),
            "steps_per_s": round(1 / step_s, 3), "images_per_s": round(batch / step_s, 1),
            "peak_mem_MiB": round(peak, 1), "peak_mem_kind": "cuda max allocated" if device == "cuda" else "process max RSS"}


class _StepClock:
    """Wall time from the start of step `first` to the end of the last step: (steps timed, seconds)."""

    def __init__(self, first: int = 10):
        self.first, self.t0, self.t1, self.n = first, None, None, 0

    def tick(self, step: int) -> None:  # called after step `step` (1-based) has finished
        now = time.perf_counter()
        if step == self.first:
            self.t0 = now
        elif step > self.first:
            self.t1, self.n = now, step - self.first

    def row(self, name: str, batch: int, **facts) -> dict:
        secs = (self.t1 or 0.0) - (self.t0 or 0.0)
        return {"loop": name, "batch": batch, "steps_timed": self.n, "seconds": round(secs, 2),
                "steps_per_s": round(self.n / secs, 3) if secs > 0 else None,
                "images_per_s": round(self.n * batch / secs, 1) if secs > 0 else None, **facts}


def loop_mmtok(folder: str, batch: int, steps: int, work: Path, overrides: list[str]) -> dict:
    """`mmtok train quickstart --data FOLDER` for `steps` steps, timed by a Lightning callback."""
    import lightning as L

    from mmtok.train.run import train

    clock = _StepClock()

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch_, batch_idx):
            clock.tick(trainer.global_step)

    recipe = config.load("quickstart", [f"data.train={folder}", "data.val=null", f"data.batch_size={batch}",
                                        f"trainer.max_steps={steps}", *overrides])
    train(recipe, work / f"mmtok_b{batch}", callbacks=[Clock()])
    return clock.row("mmtok train", batch)


def loop_plain(folder: str, batch: int, steps: int, overrides: list[str]) -> dict:
    """The quick start's model, loss (generator_loss) and optimizer settings in a bare loop, same loader."""
    from mmtok.data import make_loader
    from mmtok.train.task import TokenizerTask

    recipe = config.load("quickstart", [f"data.train={folder}", f"data.batch_size={batch}", *overrides])
    torch.manual_seed(recipe.seed)
    task = TokenizerTask(recipe)
    model, o = task.tokenizer.train(), recipe.optim
    opt = torch.optim.Adam(model.parameters(), lr=o.lr, betas=tuple(o.betas))
    loader = make_loader(folder, "train", recipe.model, batch_size=batch, num_workers=1, seed=recipe.seed)
    clock, batches = _StepClock(), iter(loader)
    for step in range(1, steps + 1):
        x = next(batches)["image"]
        total, _, _ = task.generator_loss(x, model(x), False)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        opt.step()
        clock.tick(step)
    return clock.row("plain loop, same model", batch)


def loop_peer(folder: str, batch: int, steps: int, llamagen: str) -> dict:
    """eval/llamagen_peer.py's composite in its own loop (train_peer), same loader."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from llamagen_peer import build_peer, train_peer

    from mmtok.data import make_loader

    torch.manual_seed(0)
    model = build_peer(llamagen)
    loader = make_loader(folder, "train", 64, batch_size=batch, num_workers=1, seed=0)
    clock = _StepClock()
    train_peer(model, loader, seconds=1e9, max_steps=steps, on_step=lambda step, loss, elapsed: clock.tick(step))
    return clock.row("peer loop (LlamaGen + vector-quantize-pytorch)", batch,
                     params_M=round(sum(p.numel() for p in model.parameters()) / 1e6, 2))


def decode_rate(folder: str, resolution: int = 64, passes: int = 3) -> dict:
    """What one loader worker does per sample without the resized copy: read, decode (JPEG draft), resize, crop."""
    import random

    from mmtok.modalities.image.decode import decode_image, find_images, image_to_uint8

    files, rng = find_images(folder), random.Random(0)
    t0 = time.perf_counter()
    for _ in range(passes):
        for f in files:
            image_to_uint8(decode_image(f.read_bytes(), min_size=resolution), resolution, random_crop=True, rng=rng)
    secs = time.perf_counter() - t0
    n = passes * len(files)
    return {"loop": "decode + resize + crop, one process", "batch": 1, "steps_timed": n, "seconds": round(secs, 2),
            "steps_per_s": round(n / secs, 3), "images_per_s": round(n / secs, 1),
            "ms_per_image": round(1000 * secs / n, 1)}


def loops(args) -> None:
    import tempfile

    rows = [decode_rate(args.loops)]
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batches:
            rows.append(loop_mmtok(args.loops, batch, args.loop_steps, Path(tmp), args.overrides))
            rows.append(loop_plain(args.loops, batch, args.loop_steps, args.overrides))
            if args.llamagen:
                rows.append(loop_peer(args.loops, batch, args.loop_steps, args.llamagen))
    print(f"{'loop':<48}{'batch':>6}{'steps':>7}{'step/s':>8}{'img/s':>8}")
    for r in rows:
        print(f"{r['loop']:<48}{r['batch']:>6}{r['steps_timed']:>7}{r['steps_per_s']:>8}{r['images_per_s']:>8}")
    report = {"device": "cpu", "device_name": platform.processor() or platform.machine(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "data": args.loops, "overrides": args.overrides,
              "timed": "wall time from the end of step 10 to the end of the last step, data loading included",
              "rows": rows}
    path = args.json or args.out / "bench_train_loops_cpu.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--json", type=Path, default=None,
                        help="write the report here (default: OUT/bench_train_DEVICE.json)")
    parser.add_argument("--recipe", default=None, help="bench this recipe alone instead of the default cases")
    parser.add_argument("--batch", type=int, default=None, help="batch size for --recipe (default: the recipe's)")
    parser.add_argument("--resolution", type=int, default=None, help="model.resolution for --recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override for --recipe (repeatable)")
    parser.add_argument("--precision", default=None, help="e.g. bf16-mixed, 32-true (default: bf16-mixed on cuda)")
    parser.add_argument("--lookup", choices=["auto", "triton", "torch"], default="auto",
                        help="nearest-code search backend (see the module docstring)")
    parser.add_argument("--loops", metavar="FOLDER", help="time whole training loops on this image folder instead")
    parser.add_argument("--loop-steps", type=int, default=60, help="steps of each loop (--loops)")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16], help="batch sizes of the loops (--loops)")
    parser.add_argument("--llamagen", help="a local LlamaGen checkout: adds the peer's loop (--loops)")
    args = parser.parse_args()
    if args.loops:
        return loops(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    use_lookup(args.lookup)
    if args.recipe:
        overrides = list(args.overrides) + ([f"model.resolution={args.resolution}"] if args.resolution else [])
        batch = args.batch or config.load(args.recipe, overrides).data.batch_size
        cases = [(args.recipe, overrides, batch)]
    else:
        cases = CASES[args.device]
    rows = [bench(n, o, b, args.device, args.steps, args.warmup, args.precision) for n, o, b in cases]
    head = f"{'recipe':<16}{'res':>5}{'batch':>6}{'prec':>11}{'params M':>9}{'step/s':>8}{'img/s':>8}{'peak MiB':>10}"
    print(head)
    for r in rows:
        print(f"{r['recipe']:<16}{r['resolution']:>5}{r['batch']:>6}{r['precision']:>11}{r['params_M']:>9}"
              f"{r['steps_per_s']:>8}{r['images_per_s']:>8}{r['peak_mem_MiB']:>10}")
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    from mmtok.quantize.lookup import _use_triton

    report = {"device": args.device, "device_name": device_name, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "lookup": args.lookup,
              "lookup_triton": args.lookup == "triton"
              or (args.lookup == "auto" and _use_triton("auto", torch.device(args.device))),
              "rows": rows}
    path = args.json or args.out / f"bench_train_{args.device}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
