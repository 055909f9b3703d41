"""Training throughput benchmark: steps/s, images/s and peak memory of real training steps.

Runs the generic task's training step (generator + discriminator when the recipe has one) on synthetic
batches, so the numbers measure the model and losses, not the data loader.

    python eval/bench_train.py                         # CPU: quickstart and VQ-16 at a size that fits
    python eval/bench_train.py --device cuda           # GPU: adds VQ-16 at 256x256 in bf16

Prints a table and writes eval/results/bench_train_<device>.json.
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
        ("llamagen_vq16", ["model.resolution=128", "loss.perceptual.weight=0", "loss.gan.start_step=0"], 2),
    ],
    "cuda": [
        ("quickstart", [], 8),
        ("llamagen_vq16", ["loss.perceptual.allow_untrained=true", "loss.gan.start_step=0"], 16),
    ],
}


def bench(name: str, overrides: list[str], batch: int, device: str, steps: int, warmup: int) -> dict:
    import lightning as L

    from mmtok.train.task import TokenizerTask

    precision = "bf16-mixed" if device == "cuda" else "32-true"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows = [bench(n, o, b, args.device, args.steps, args.warmup) for n, o, b in CASES[args.device]]
    head = f"{'recipe':<16}{'res':>5}{'batch':>6}{'prec':>11}{'params M':>9}{'step/s':>8}{'img/s':>8}{'peak MiB':>10}"
    print(head)
    for r in rows:
        print(f"{r['recipe']:<16}{r['resolution']:>5}{r['batch']:>6}{r['precision']:>11}{r['params_M']:>9}"
              f"{r['steps_per_s']:>8}{r['images_per_s']:>8}{r['peak_mem_MiB']:>10}")
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    report = {"device": args.device, "device_name": device_name, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench_train_{args.device}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
