"""Two CPU processes on gloo, each updating the metrics with a different part of the data: compute() on
every rank must equal a single-process run over all of it."""
from __future__ import annotations

import datetime
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

WORLD = 2
N = 13  # images; rank 0 gets the first SPLIT, rank 1 the rest (uneven on purpose)
SPLIT = 6
K = 32


def _extractor() -> nn.Module:
    torch.manual_seed(0)  # the same network on every rank
    return nn.Sequential(nn.Conv2d(3, 6, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).double()


def _data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    real = torch.rand(N, 3, 16, 16, generator=g, dtype=torch.float64)
    fake = (real + 0.2 * torch.randn(real.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    ids = torch.randint(K - 4, (N, 2, 5), generator=g)  # the last codes stay unused
    return {"real": real, "fake": fake, "ids": ids}


def _run(parts: list[slice], stats_path: str | None) -> dict:
    from mmtok.metrics import PSNR, SSIM, CodebookUsage, FrechetInceptionDistance

    d = _data()
    fid, p, s, usage = FrechetInceptionDistance(_extractor(), num_features=6), PSNR(), SSIM(), CodebookUsage(K)
    for part in parts:
        for i in range(part.start, part.stop, 4):  # several updates per rank
            j = slice(i, min(i + 4, part.stop))
            real, fake = d["real"][j], d["fake"][j]
            fid.update(real * 2 - 1, real=True)
            fid.update(fake * 2 - 1, real=False)
            p.update(fake, real)
            s.update(fake, real)
            usage.update(d["ids"][j])
    out = {"fid": fid.compute(), "psnr": p.compute(), "ssim": s.compute(), "usage": usage.compute(),
           "histogram": usage.histogram(), "local_count": usage.num_samples.clone()}
    if stats_path is not None:
        fid.save_reference_stats(stats_path)  # collective: every rank calls it, rank 0 writes
    return out


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        part = slice(0, SPLIT) if rank == 0 else slice(SPLIT, N)
        out = _run([part], os.path.join(out_dir, "stats.npz"))  # the same path on both ranks
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # both ranks past every collective before either tears gloo down
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # ~11 s: two fresh interpreters import torch + torchmetrics
def test_metrics_sync_across_two_processes(tmp_path):
    import numpy as np

    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    single = _run([slice(0, N)], str(tmp_path / "single.npz"))
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert int(got["local_count"]) == (SPLIT if rank == 0 else N - SPLIT)  # the ranks saw different data
        for key in ("fid", "psnr", "ssim"):
            assert abs(got[key].item() - single[key].item()) <= 1e-9 * max(1.0, abs(single[key].item())), key
        assert single["fid"].item() > 1e-4  # not trivially zero
        assert torch.equal(got["histogram"], single["histogram"])
        for key in ("used_codes", "total_tokens", "num_samples"):
            assert torch.equal(got["usage"][key], single["usage"][key]), key
        for key in ("usage_pct", "perplexity", "entropy_bits", "tokens_per_sample"):
            assert abs(got["usage"][key].item() - single["usage"][key].item()) <= 1e-12, key
    assert sorted(p.name for p in tmp_path.glob("stats*")) == ["stats.npz"]  # written once, by rank 0
    with np.load(tmp_path / "stats.npz") as a, np.load(tmp_path / "single.npz") as b:
        assert int(a["count"]) == int(b["count"]) == N  # covers both ranks' images
        np.testing.assert_allclose(a["mu"], b["mu"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(a["sigma"], b["sigma"], rtol=0, atol=1e-12)
