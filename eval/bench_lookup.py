"""Nearest-code lookup benchmark: mmtok `nearest()` beside the usual ways of doing it, time and peak memory.

    python eval/bench_lookup.py --device cpu            # ~4 min on 2 cores
    python eval/bench_lookup.py --device cuda           # the full GPU grid
    python eval/bench_lookup.py --device cpu --quick    # a smoke run
    TRITON_INTERPRET=1 python eval/bench_lookup.py --device cpu --cases 256:64:8 --backend triton
                                                        # one tiny case through the kernel's interpreter

Methods, all on the same x [N, D] and codebook [K, D] (l2 metric):
  mmtok    mmtok.quantize.lookup.nearest(x, c) with backend="auto" (Triton on CUDA, chunked torch on CPU),
           or the backend given by --backend
  cdist    torch.cdist(x, c).argmin(1)
  chunked  plain torch: rows in blocks of 4096, ||c||^2 - 2 x @ c.T in the input dtype, argmin
  vqp      vector-quantize-pytorch VectorQuantize(dim=D, codebook_size=K) in eval mode with our codebook
  gemm     x @ c.T alone, the arithmetic limit (on CUDA written in row blocks into one reused buffer of
           <= 1 GiB, so that it fits; on CPU whole)
The "ids" column says whether each method's ids equal mmtok's (count of differing rows otherwise).

Timing: median (and min) of --repeats runs after --warmup runs; torch.cuda.synchronize around each on GPU.
Peak memory, GPU: torch.cuda.max_memory_allocated during one call, minus what was allocated before it (the
inputs). CPU: each (case, method) runs in a fresh subprocess; peak = rise of the process's peak resident set
(VmHWM, reset through /proc/self/clear_refs just before) during the first call, over the resident set just
before it. That is the honest OS-level number (torch has no CPU allocator statistics); it includes one-time
library buffers (a few MiB) and, being page-granular, ignores allocations never touched. Memory is also shown
in units of one N x K fp32 matrix ("xNK").

GPU cases whose estimated need exceeds the free memory are skipped and marked in the table.
Results: a table on stdout and JSON in eval/results/bench_lookup_<device>.json (or --out), rewritten after
every case, so a run cut short still leaves the cases it finished.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

METHODS = ["mmtok", "cdist", "chunked", "vqp", "gemm"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
RESULTS = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------------------------------------ cases
def cases(device: str, quick: bool, dtypes: list[str], only: str | None = None) -> list[dict]:
    if only:  # "N:K:D,N:K:D"
        sizes = [tuple(int(v) for v in c.split(":")) for c in only.split(",")]
        return [dict(N=n, K=k, D=d, dtype=t) for t in dtypes for n, k, d in sizes]
    if device == "cuda":
        ns, ks, ds = ([32768], [1024, 16384], [8, 256]) if quick else ([32768, 262144], [1024, 16384, 65536], [8, 32, 256])
    else:
        ns, ks, ds = ([4096], [1024], [8, 64]) if quick else ([4096, 16384], [1024, 4096], [8, 64])
    return [dict(N=n, K=k, D=d, dtype=t) for t in dtypes for n in ns for k in ks for d in ds]


def make_inputs(case: dict, device: str):
    g = torch.Generator(device=device).manual_seed(case["N"] * 31 + case["K"] * 7 + case["D"])
    x = torch.randn(case["N"], case["D"], device=device, generator=g)
    c = torch.randn(case["K"], case["D"], device=device, generator=g)
    dtype = DTYPES[case["dtype"]]
    return (x, c) if dtype == torch.float32 else (x.to(dtype), c.to(dtype))


# ---------------------------------------------------------------------------------------------- methods
def build(method: str, x: torch.Tensor, c: torch.Tensor, backend: str = "auto"):
    """A zero-argument callable returning ids (or None for gemm); set-up cost stays outside it."""
    if method == "mmtok":
        from mmtok.quantize.lookup import nearest

        return lambda: nearest(x, c, "l2", backend=backend)
    if method == "cdist":
        return lambda: torch.cdist(x, c).argmin(1)
    if method == "chunked":
        csq = (c.float() ** 2).sum(1)

        def chunked():
            ids = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
            for s in range(0, x.shape[0], 4096):
                ids[s : s + 4096] = (csq - 2 * (x[s : s + 4096] @ c.T).float()).argmin(1)
            return ids

        return chunked
    if method == "vqp":
        from vector_quantize_pytorch import VectorQuantize

        vq = VectorQuantize(dim=x.shape[1], codebook_size=c.shape[0]).to(x.device).eval()
        with torch.no_grad():
            vq._codebook.embed.copy_(c.float()[None])  # [heads=1, K, D]
            vq._codebook.initted.fill_(True)

        def run_vq():
            with torch.no_grad():
                return vq(x[None])[1][0]

        return run_vq
    if method == "gemm":
        if x.is_cuda:
            rows = max(1, min(x.shape[0], (1 << 30) // (c.shape[0] * x.element_size())))
            buf = torch.empty(rows, c.shape[0], dtype=x.dtype, device=x.device)

            def gemm():
                for s in range(0, x.shape[0], rows):
                    xs = x[s : s + rows]
                    torch.mm(xs, c.T, out=buf[: xs.shape[0]])

            return gemm
        return lambda: (x @ c.T, None)[1]
    raise ValueError(method)


def estimate_bytes(method: str, case: dict) -> int:
    """Rough peak need beyond the inputs, used only to skip GPU cases that cannot fit."""
    n, k, d = case["N"], case["K"], case["D"]
    nk = n * k * 4
    return {
        "mmtok": n * 64 + (1 << 26),
        "cdist": 2 * nk,
        "chunked": 3 * 4096 * k * 4,
        "vqp": 6 * nk + 3 * n * d * 4,
        "gemm": 1 << 30,
    }[method]


# -------------------------------------------------------------------------------------------- measuring
def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _sync(device: str):
    if device == "cuda":
        torch.cuda.synchronize()


def measure(method: str, x, c, device: str, warmup: int, repeats: int, ids_path: str | None = None,
            backend: str = "auto") -> tuple[dict, object]:
    fn = build(method, x, c, backend)
    _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        ids = fn()
        _sync(device)
        peak = torch.cuda.max_memory_allocated() - base
        how = "cuda.max_memory_allocated"
    else:
        rss0 = _status_kib("VmRSS")
        if _reset_peak_rss():
            ids = fn()
            peak, how = (_status_kib("VmHWM") - rss0) * 1024, "VmHWM after clear_refs"
        else:
            import resource

            ids = fn()
            peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
            how = "ru_maxrss"
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    out = dict(status="ok", median_ms=statistics.median(times), min_ms=min(times), peak_bytes=max(0, peak),
               peak_how=how, repeats=repeats)
    if ids is not None and ids_path:
        torch.save(ids.cpu(), ids_path)
    return out, ids


def worker(spec: dict) -> None:
    """Run one (case, method) on CPU in this fresh process and print one JSON line."""
    torch.manual_seed(0)
    x, c = make_inputs(spec["case"], "cpu")
    try:
        res, _ = measure(spec["method"], x, c, "cpu", spec["warmup"], spec["repeats"], spec["ids_path"],
                         spec.get("backend", "auto"))
    except Exception as e:  # report it in the table rather than lose the whole run
        res = dict(status=f"error: {type(e).__name__}: {e}"[:200])
    print("RESULT " + json.dumps(res))


def run_cpu_case(case: dict, args, tmp: Path) -> dict:
    out = {}
    for m in args.methods:
        ids_path = str(tmp / f"{m}.pt")
        spec = dict(case=case, method=m, warmup=args.warmup, repeats=args.repeats, ids_path=ids_path,
                    backend=args.backend)
        r = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                           env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        res = json.loads(line[-1][7:]) if line else dict(status=f"error: worker exited {r.returncode}: {r.stderr[-300:]}")
        res["ids_path"] = ids_path if Path(ids_path).exists() else None
        out[m] = res
    return out


def run_cuda_case(case: dict, args, tmp: Path) -> dict:
    x, c = make_inputs(case, "cuda")
    out = {}
    for m in args.methods:
        torch.cuda.empty_cache()
        free, _ = torch.cuda.mem_get_info()
        need = estimate_bytes(m, case)
        if need > 0.85 * free:
            out[m] = dict(status=f"skipped: needs ~{need / 2**30:.0f} GiB, {free / 2**30:.0f} GiB free")
            continue
        try:
            res, ids = measure(m, x, c, "cuda", args.warmup, args.repeats, backend=args.backend)
            if ids is not None:
                path = tmp / f"{m}.pt"
                torch.save(ids.cpu(), path)
                res["ids_path"] = str(path)
            del ids
        except torch.cuda.OutOfMemoryError:
            res = dict(status="skipped: out of memory")
        except Exception as e:
            res = dict(status=f"error: {type(e).__name__}: {e}"[:200])
        out[m] = res
    del x, c
    return out


def compare_ids(results: dict) -> None:
    ref_path = results.get("mmtok", {}).get("ids_path")
    ref = torch.load(ref_path, weights_only=True) if ref_path else None
    for m, r in results.items():
        p = r.pop("ids_path", None)
        if m == "mmtok" or ref is None or not p:
            continue
        ids = torch.load(p, weights_only=True)
        r["ids_differ"] = int((ids != ref).sum())


# ---------------------------------------------------------------------------------------------- report
def cell(r: dict, case: dict) -> str:
    if not r or r.get("status") != "ok":
        return (r or {}).get("status", "-").replace("skipped: ", "skip: ")[:40]
    nk = case["N"] * case["K"] * 4
    return f"{r['median_ms']:.1f} ms / {r['peak_bytes'] / 2**20:.0f} MiB ({r['peak_bytes'] / nk:.2f}xNK)"


def ids_cell(results: dict) -> str:
    parts = []
    for m, r in results.items():
        if "ids_differ" in r:
            parts.append(f"{m} {'==' if r['ids_differ'] == 0 else '!=' + str(r['ids_differ'])}")
    return ", ".join(parts)


def print_table(rows: list[dict], methods: list[str], title: str) -> None:
    header = ["N", "K", "D", "dtype"] + methods + ["ids vs mmtok"]
    body = [[str(r["N"]), str(r["K"]), str(r["D"]), r["dtype"]] + [cell(r["methods"].get(m), r) for m in methods]
            + [ids_cell(r["methods"])] for r in rows]
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title)
        for h in header:
            t.add_column(h, overflow="fold")
        for b in body:
            t.add_row(*b)
        Console(width=240).print(t)
    except ImportError:
        print(title)
        for line in [header] + body:
            print(" | ".join(line))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="a few small cases")
    ap.add_argument("--dtypes", default=None, help="comma list of fp32,bf16 (default: fp32,bf16 on cuda, fp32 on cpu)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads per worker")
    ap.add_argument("--out", default=None)
    ap.add_argument("--cases", default=None, help="only these sizes, N:K:D comma-separated (e.g. 256:64:8)")
    ap.add_argument("--backend", choices=["auto", "triton", "torch"], default="auto",
                    help="backend of the mmtok method (triton on CPU needs TRITON_INTERPRET=1)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here")
    dtypes = (args.dtypes or ("fp32,bf16" if args.device == "cuda" else "fp32")).split(",")
    args.methods = args.methods.split(",")
    args.warmup = args.warmup if args.warmup is not None else (3 if args.device == "cuda" else 1)
    args.repeats = args.repeats if args.repeats is not None else (10 if args.device == "cuda" else 5)
    try:  # recorded in the JSON; the CPU path does not need it
        import triton  # noqa: F401
    except ImportError:
        pass

    from mmtok.quantize.lookup import _kernels, _use_triton

    env = dict(
        device=args.device,
        device_name=torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine(),
        cpu_threads=args.threads if args.device == "cpu" else None,
        mmtok_backend=("triton" if args.backend == "triton" or (args.backend == "auto"
                                                                and _use_triton("auto", torch.device(args.device)))
                       else "torch"),
        torch=torch.__version__, triton=getattr(sys.modules.get("triton"), "__version__", None),
        kernels_import=_kernels() is not None, warmup=args.warmup, repeats=args.repeats,
        memory=("torch.cuda.max_memory_allocated minus inputs" if args.device == "cuda"
                else "peak RSS rise during the first call, fresh process per case and method"),
    )
    out = Path(args.out) if args.out else RESULTS / f"bench_lookup_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    todo = cases(args.device, args.quick, dtypes, args.cases)
    rows = []
    for case in todo:
        with tempfile.TemporaryDirectory() as tmp:
            run = run_cuda_case if args.device == "cuda" else run_cpu_case
            res = run(case, args, Path(tmp))
            compare_ids(res)
        rows.append(dict(case, methods=res))
        print(f"done N={case['N']} K={case['K']} D={case['D']} {case['dtype']}: "
              + "; ".join(f"{m} {cell(r, case)}" for m, r in res.items()), flush=True)
        out.write_text(json.dumps(dict(env=env, cases=rows, complete=len(rows) == len(todo)), indent=1))

    title = f"nearest-code lookup, {env['device_name']} ({args.device}), l2, median ms / peak memory"
    print_table(rows, args.methods, title)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
