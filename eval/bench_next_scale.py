"""Next-scale (VAR's block-causal form, `mmtok lm extend --next-scale`) against ordinary causal sequences of the same
multi-scale bundle in the same LLM: forward passes and time to sample images, and time per training step.

    python eval/bench_next_scale.py --llm SmolLM2-135M-Instruct.Q4_1.gguf --bundle bundles/var \\
        --data data/stamps/train --work /tmp/next_scale

The LLM is extended twice under --work (once per form; reused when there), --data is tokenized once. generate:
--num captions with classifier-free guidance (a doubled batch), top-k 100, the median of --repeats timed runs after
one warm-up; every pass of the model is counted. train: `LMTask.loss` + backward + AdamW on packed batches (block
--block x batch --batch; eval/bench_lm.py's timer), median over --steps. Both forms run in this one process, one
after the other. Prints a table and writes eval/results/var/next_scale_bench.json (or --json PATH).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from bench_lm import bench_train


def prepare(args) -> dict[str, Path]:
    from mmtok.lm.extend import extend
    from mmtok.lm.tokens import tokenize

    out = {}
    for name, next_scale in (("causal", False), ("next_scale", True)):
        out[name] = args.work / name
        if not (out[name] / "mmtok_layout.json").is_file():
            extend(args.llm, [args.bundle], out[name], next_scale=next_scale, force=True)
    tokens = args.work / "tokens"
    if not (tokens / "tokens.json").is_file():
        tokenize(args.bundle, str(args.data), tokens, progress=False)
    out["tokens"] = tokens
    return out


def bench_generate(model_dir: Path, num: int, repeats: int) -> dict:
    from mmtok.lm.generate import generate_spans
    from mmtok.lm.llm import load_extended

    model, tokenizer, layout = load_extended(model_dir, dtype=torch.float32)
    m = layout.modality("image")
    passes = []
    model.register_forward_pre_hook(lambda mod, a: passes.append(1))
    captions = ["A red apple.", "A tiger.", "A frog.", "A blue car."] * (num // 4 + 1)
    generate_spans(model, tokenizer, m, captions[:num], cfg_scale=3.0, top_k=100, seed=0)  # warm-up
    times = []
    for r in range(repeats):
        passes.clear()
        t0 = time.perf_counter()
        generate_spans(model, tokenizer, m, captions[:num], cfg_scale=3.0, top_k=100, seed=r + 1)
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    return {"form": "next_scale" if m.next_scale else "causal", "case": "generate (CFG)",
            "detail": f"{num} images, {2 * num} rows", "forward_passes": len(passes), "seconds": round(seconds, 2),
            "seconds_all": [round(t, 2) for t in times], "codes_per_s": round(num * m.codes_per_sample / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", required=True, help="a local causal LM (directory or .gguf)")
    parser.add_argument("--bundle", required=True, type=Path, help="a multi-scale bundle (mmtok export of var)")
    parser.add_argument("--data", required=True, type=Path, help="captioned images to tokenize for the train steps")
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--num", type=int, default=4, help="images per generate call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", type=Path,
                        default=Path(__file__).parent / "results" / "var" / "next_scale_bench.json")
    args = parser.parse_args()
    paths = prepare(args)
    rows = []
    for form in ("causal", "next_scale"):
        rows.append(bench_generate(paths[form], args.num, args.repeats))
        train = bench_train(str(paths[form]), str(paths["tokens"]), "cpu", False, args.block, args.batch, args.steps,
                            args.warmup)
        rows.append({"form": form, **train})
    print(f"{'form':<12}{'case':<16}{'detail':<22}{'passes':>8}{'seconds':>9}{'codes/s':>9}{'step s':>8}"
          f"{'tokens/s':>10}")
    for r in rows:
        print(f"{r['form']:<12}{r['case']:<16}{r['detail']:<22}{r.get('forward_passes', '-'):>8}"
              f"{r.get('seconds', '-'):>9}{r.get('codes_per_s', '-'):>9}{r.get('median_step_s', '-'):>8}"
              f"{r.get('tokens_per_s', '-'):>10}")
    gen = {r["form"]: r for r in rows if r["case"].startswith("generate")}
    speedup = round(gen["causal"]["seconds"] / gen["next_scale"]["seconds"], 2)
    print(f"sampling: next-scale {speedup}x the speed of causal")
    report = {"device": "cpu", "device_name": platform.processor() or platform.machine(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "llm": str(args.llm), "bundle": str(args.bundle),
              "sampling_speedup": speedup, "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
