"""Two CPU processes on gloo, each with different data: codebook state must stay bitwise identical."""
from __future__ import annotations

import datetime
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2
STEPS = 4
K = 16


def _data(rank: int, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * rank + step)
    # rank-dependent offset: the ranks' batches really differ, so unsynced updates would diverge
    return torch.randn(3, 5, 6, generator=g) + rank


def _ids(rank: int) -> torch.Tensor:
    return torch.randint(K, (40 + 7 * rank,), generator=torch.Generator().manual_seed(rank))


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        from mmtok.quantize.config import QuantizerConfig
        from mmtok.quantize import VectorQuantizer, code_counts

        results = {"counts": code_counts(_ids(rank), K), "local_counts": code_counts(_ids(rank), K, sync=False)}
        for name, cfg in {
            "ema": dict(ema=True, kmeans_init=True, kmeans_iters=3, restart_after=1, restart_below=0.3, ema_decay=0.8),
            "grad": dict(ema=False, kmeans_init=True, kmeans_iters=2, restart_after=1, l2_norm=False),
        }.items():
            torch.manual_seed(0)  # same initial weights everywhere, as DDP would ensure
            vq = VectorQuantizer(6, QuantizerConfig(codebook_size=K, dim=4, **cfg)).train()
            torch.manual_seed(100 + rank)  # different global RNG per rank: restarts must still agree
            for step in range(STEPS):
                out = vq(_data(rank, step))
            results[name] = {k: v.detach().clone() for k, v in vq.state_dict().items()}
            results[name + "_stats"] = {k: v.clone() for k, v in out.stats.items()}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # both ranks past every collective before either tears gloo down
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes each import torch: ~7 s on 2 shared cores
def test_codebook_state_identical_across_ranks(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))

    expected = sum(torch.bincount(_ids(r), minlength=K) for r in range(WORLD))
    assert torch.equal(r0["counts"], expected) and torch.equal(r1["counts"], expected)
    assert not torch.equal(r0["local_counts"], r1["local_counts"])  # the ranks' ids really differ

    for name in ("ema", "grad"):
        s0, s1 = r0[name], r1[name]
        expected_keys = {"codebook", "steps_unused", "initted", "restarts"}
        assert expected_keys <= set(s0)
        if name == "ema":
            assert {"ema_count", "ema_sum"} <= set(s0)
        for key in s0:
            if key.startswith("proj_"):  # trained by gradients, which DDP (not the quantizer) syncs
                continue
            assert torch.equal(s0[key], s1[key]), f"{name}: {key} differs across ranks"
        assert bool(s0["initted"]) and int(s0["restarts"]) > 0, f"{name}: restarts never exercised"
        for key, v in r0[name + "_stats"].items():
            assert torch.equal(v, r1[name + "_stats"][key]), f"{name}: stat {key} differs across ranks"
