"""LLM-stage throughput: tokens/s of `mmtok tokenize`, of LM training steps (full fine-tuning and LoRA) and of
classifier-free-guided image sampling, on the README's SmolLM2 run.

    python eval/bench_lm.py --model lm/smollm2-vq --bundle bundles/quickstart --data data/stamps/train \\
        --tokens tokens/stamps-train                      # CPU (the README's files; see its LLM section)
    python eval/bench_lm.py ... --device cuda             # GPU: bf16 autocast for the LM

tokenize: the whole --data folder encoded into a temporary token directory (tokens = codes written).
train: `LMTask.loss` + backward + AdamW step on packed batches from --tokens (block 256 x batch 4 unless
--block / --batch), median over --steps after --warmup; tokens/s counts every position of the block.
generate: one prompt, 4 images with guidance (a doubled batch of 8 rows), image tokens (74 per image) per second.

Prints a table and writes eval/results/bench_lm_<device>.json (or --json PATH).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch


def bench_tokenize(bundle: str, data: str, device: str) -> dict:
    from mmtok.lm.tokens import tokenize

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = tokenize(bundle, data, Path(tmp) / "tok", batch_size=64, device=device, progress=False)
        seconds = time.perf_counter() - t0
    return {"case": "tokenize", "detail": f"{report['encoded']} images, batch 64", "seconds": round(seconds, 2),
            "tokens_per_s": round(report["tokens"] / seconds, 1),
            "items_per_s": round(report["encoded"] / seconds, 1)}


def bench_train(model_dir: str, tokens: str, device: str, lora: bool, block: int, batch: int, steps: int,
                warmup: int) -> dict:
    from mmtok.lm.llm import load_extended
    from mmtok.lm.recipe import load_recipe
    from mmtok.lm.task import LMTask
    from mmtok.lm.train import build_data

    recipe = load_recipe({"model": {"path": model_dir}, "lora": {"r": 16, "alpha": 32} if lora else None,
                          "data": {"train": tokens, "val": None, "block_size": block, "batch_size": batch}})
    model, tokenizer, layout = load_extended(model_dir, dtype=torch.float32)
    stream, _, _ = build_data(recipe, tokenizer, layout)
    task = LMTask(recipe, model, layout, stream).to(device).train()
    params = [p for p in task.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else nullcontext()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for b in range(warmup + steps):
        data = {k: v.to(device) for k, v in stream.batch(b).items()}
        t0 = time.perf_counter()
        with autocast:
            loss, _ = task.loss(data)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[warmup:])
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"case": "train LoRA r=16" if lora else "train full", "detail": f"block {block} x batch {batch}",
            "trainable_M": round(sum(p.numel() for p in params) / 1e6, 2), "median_step_s": round(step, 3),
            "tokens_per_s": round(block * batch / step, 1), "peak_mem_MiB": round(peak, 1)}


def bench_generate(model_dir: str, device: str, n: int = 4) -> dict:
    from mmtok.lm.generate import generate_spans
    from mmtok.lm.llm import load_extended

    model, tokenizer, layout = load_extended(model_dir, dtype=torch.float32)
    model.to(device)
    m = layout.modality("image")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else nullcontext()
    with autocast:
        generate_spans(model, tokenizer, m, ["A frog."], cfg_scale=3.0, top_k=100, seed=0)  # warm-up
        t0 = time.perf_counter()
        generate_spans(model, tokenizer, m, ["A red apple."] * n, cfg_scale=3.0, top_k=100, seed=1)
        seconds = time.perf_counter() - t0
    return {"case": "generate (CFG)", "detail": f"{n} images, {2 * n} rows", "seconds": round(seconds, 2),
            "tokens_per_s": round(n * m.span_length / seconds, 1), "items_per_s": round(n / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="extended model directory (mmtok lm extend)")
    parser.add_argument("--bundle", required=True, help="the bundle it was extended with")
    parser.add_argument("--data", required=True, help="captioned images to tokenize")
    parser.add_argument("--tokens", required=True, help="token directory to train on")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    rows = [bench_tokenize(args.bundle, args.data, args.device)]
    for lora in (False, True):
        rows.append(bench_train(args.model, args.tokens, args.device, lora, args.block, args.batch, args.steps,
                                args.warmup))
    rows.append(bench_generate(args.model, args.device))
    print(f"{'case':<18}{'detail':<24}{'tokens/s':>10}{'step s':>9}{'trainable M':>13}{'peak MiB':>10}")
    for r in rows:
        print(f"{r['case']:<18}{r['detail']:<24}{r['tokens_per_s']:>10}{r.get('median_step_s', '-'):>9}"
              f"{r.get('trainable_M', '-'):>13}{r.get('peak_mem_MiB', '-'):>10}")
    name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    report = {"device": args.device, "device_name": name, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "model": args.model, "rows": rows}
    path = args.json or Path(__file__).parent / "results" / f"bench_lm_{args.device}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
