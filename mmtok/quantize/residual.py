"""Residual vector quantization (SoundStream / EnCodec / DAC): `levels` vector quantizers in sequence, level i
quantizing what levels 0..i-1 left of the input, the output being the sum of the levels' outputs.

Each level is a complete `VectorQuantizer(input_dim, cfg.level_config())`: its own codebook, its own
projections in and out (DAC-style: the residual lives in the input space, each level projects it to its
`dim`-dimensional code space and back; with input_dim == dim the projections are identities, EnCodec-style),
its own EMA / k-means / dead-code restart state. The residual arithmetic runs in fp32; the levels are not
detached from each other (as DAC), so the chain carries the straight-through gradient.

Quantizer dropout (bitrate scalability): in training, with probability `cfg.quantizer_dropout` a batch uses
only the first n ~ U{1..levels} levels. The draw comes from a private generator seeded by persistent buffers
(a seed and a step counter, so a resumed run draws the same sequence) and is then broadcast from rank 0, so
every rank uses the same n. All levels still run (their ids, statistics and EMA / restart state come from their
true residual inputs, which do not depend on later levels); the dropped levels' outputs and losses are
multiplied by zero, which keeps every parameter in the graph (DDP needs no find_unused_parameters).
With `cfg.dropout_per == "sample"` (DAC) each sample (index along the first dimension) draws its own n, from
the same private generator: sample b keeps the first n_b levels, and each level's losses are scaled by the share
of samples that keep it (the mean of DAC's per-sample masked losses when the samples' losses are alike).
Evaluation always uses all levels; decode from fewer with `lookup(ids[..., :n])`.
"""
from __future__ import annotations

import torch
from torch import nn

from mmtok.quantize.config import ResidualVQConfig
from mmtok.quantize.base import QuantizeOutput
from mmtok.quantize.stats import broadcast_from_rank0
from mmtok.quantize.vq import VectorQuantizer
from mmtok.registry import QUANTIZERS

_MEAN_STATS = ("usage", "perplexity", "entropy_bits")


@QUANTIZERS.register("rvq")
class ResidualVQ(nn.Module):
    """Residual VQ over `cfg.levels` codebooks of `cfg.codebook_size` codes for inputs of `input_dim` channels.

    forward(z [..., input_dim]) -> QuantizeOutput(z_q [..., input_dim] in z's dtype, ids [..., levels] long
    (a trailing level dimension), losses: the VQ loss names, each summed over the levels in use,
    stats: "usage" / "perplexity" / "entropy_bits" averaged over all levels, "usage_l0".. per level,
    "restarts" summed, "levels_used" (n)).
    lookup(ids [..., n]) for any 1 <= n <= levels: the sum of the first n levels' code vectors (fp32), equal to
    forward's z_q (bitwise in eval) when n == levels.
    """

    def __init__(self, input_dim: int, cfg: ResidualVQConfig, *, entropy_loss: bool = False):
        super().__init__()
        level_cfg = cfg.level_config()
        self.cfg = cfg
        self.quantizers = nn.ModuleList(
            VectorQuantizer(input_dim, level_cfg, entropy_loss=entropy_loss) for _ in range(cfg.levels))
        self.input_dim, self.dim, self.codebook_size = input_dim, cfg.dim, cfg.codebook_size
        self.num_codebooks = cfg.levels
        # quantizer dropout's generator state: saved, so a resumed run draws the same sequence
        self.register_buffer("dropout_seed", torch.randint(2**62, ()))
        self.register_buffer("dropout_step", torch.zeros((), dtype=torch.long))

    def export_ids(self, x: torch.Tensor) -> torch.Tensor:
        """Ids [N, levels] of rows x [N, input_dim] (fp32), every level, export-safe (see VectorQuantizer)."""
        ids, residual = [], x
        for level in self.quantizers:
            level_ids = level.export_ids(residual)
            residual = residual - level.export_vectors(level_ids)
            ids.append(level_ids)
        return torch.stack(ids, dim=-1)

    def export_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """The summed code vectors [N, input_dim] of ids [N, n] (the first n levels), export-safe."""
        out = self.quantizers[0].export_vectors(ids[:, 0])
        for i in range(1, ids.shape[1]):
            out = out + self.quantizers[i].export_vectors(ids[:, i])
        return out

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids [..., n] (1 <= n <= levels; level i in column i) -> the sum of their code vectors [..., input_dim]."""
        n = ids.shape[-1] if ids.dim() else 0
        if not 1 <= n <= len(self.quantizers):
            raise ValueError(f"ResidualVQ.lookup expects ids [..., n] with 1 <= n <= {len(self.quantizers)}, "
                             f"got shape {tuple(ids.shape)}")
        out = self.quantizers[0].lookup(ids[..., 0])
        for i in range(1, n):
            out = out + self.quantizers[i].lookup(ids[..., i])
        return out

    def levels_in_use(self, batch: int = 1) -> int | torch.Tensor:
        """How many leading levels this forward uses: all in eval or without dropout; in training, with
        probability quantizer_dropout a uniform draw from 1..levels (the same on every rank). With
        dropout_per "sample": a LongTensor [batch] of such draws, one per sample."""
        L, p = len(self.quantizers), self.cfg.quantizer_dropout
        if not self.training or p == 0:
            return L
        gen = torch.Generator().manual_seed(int(self.dropout_seed) + int(self.dropout_step))
        self.dropout_step.add_(1)
        if self.cfg.dropout_per == "sample":
            drop = torch.rand(batch, generator=gen) < p
            n = torch.where(drop, torch.randint(1, L + 1, (batch,), generator=gen), torch.full((batch,), L))
            return n.to(self.dropout_step.device)
        n = int(torch.randint(1, L + 1, (), generator=gen)) if float(torch.rand((), generator=gen)) < p else L
        return int(broadcast_from_rank0(torch.tensor(n, device=self.dropout_step.device)))

    def forward(self, z: torch.Tensor) -> QuantizeOutput:
        if z.shape[-1:] != (self.input_dim,) or not z.is_floating_point():
            raise ValueError(f"ResidualVQ expects a float tensor [..., {self.input_dim}], "
                             f"got {z.dtype} {tuple(z.shape)}")
        n = self.levels_in_use(z.shape[0] if z.dim() > 1 else 1)
        residual = z.float()
        z_q = None
        ids, losses, stats = [], {}, {}
        for i, quantizer in enumerate(self.quantizers):
            out = quantizer(residual)  # fp32 in, fp32 out
            if isinstance(n, torch.Tensor):  # per sample: sample b keeps level i when i < n[b]
                mask = (n > i).to(out.z_q.dtype)
                contribution = out.z_q * mask.view(-1, *([1] * (out.z_q.dim() - 1)))
                scale = mask.mean()  # the share of samples that keep this level
            else:
                scale = None if i < n else 0.0  # dropped: in the graph, worth nothing
                contribution = out.z_q if scale is None else 0.0 * out.z_q
            z_q = contribution if z_q is None else z_q + contribution
            residual = residual - out.z_q
            ids.append(out.ids)
            for name, value in out.losses.items():
                term = value if scale is None else scale * value
                losses[name] = losses[name] + term if name in losses else term
            for name in _MEAN_STATS:
                stats[name] = stats.get(name, 0.0) + out.stats[name] / len(self.quantizers)
            stats[f"usage_l{i}"] = out.stats["usage"]
            stats["restarts"] = stats.get("restarts", 0.0) + out.stats["restarts"]
        stats["levels_used"] = (n.float().mean() if isinstance(n, torch.Tensor)
                                else torch.tensor(float(n), device=z.device))
        return QuantizeOutput(z_q=z_q.to(z.dtype), ids=torch.stack(ids, dim=-1), losses=losses, stats=stats)
