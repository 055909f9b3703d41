"""The dual codebook: a semantic and a pixel codebook of K l2-normalised codes each, with ONE shared index.

ids = argmin_k  w_sem ||s(x_sem) - s(c_sem[k])||^2 + w_pix ||s(x_pix) - s(c_pix[k])||^2   (s: l2-normalisation)

through `mmtok.quantize.lookup.nearest_dual` (chunked matmul on CPU, the fused Triton kernel on CUDA). Training
extras, as the vector quantizer has them: k-means init on the first batch (in the joint space the index
searches, so the two codebooks start as one clustering), EMA or gradient codebooks, dead-code restarts (a dead
index is reset in both codebooks to the same batch row). Across ranks, counts and EMA sums are all-reduced and
k-means centroids / restarted codes come from rank 0, as in mmtok.quantize.vq.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmtok.families.tokenflow.config import DualCodebookConfig
from mmtok.quantize.lookup import nearest_dual
from mmtok.quantize.stats import all_reduce_sum, broadcast_from_rank0, code_counts, rank, usage_stats
from mmtok.quantize.vq import dead_codes, kmeans, straight_through


def vq_terms(xs: torch.Tensor, xp: torch.Tensor, qs: torch.Tensor, qp: torch.Tensor, ema: bool):
    """Both branches' VQ terms for inputs x and their quantised values q (any shape): commitment (summed; per
    branch in stats), codebook (not with EMA), and q passed straight through to x where x needs a gradient.
    Returns (q_sem, q_pix, losses, stats)."""
    commit_sem, commit_pix = F.mse_loss(xs, qs.detach()), F.mse_loss(xp, qp.detach())
    losses = {"commitment": commit_sem + commit_pix}
    stats = {"sem_commitment": commit_sem.detach(), "pix_commitment": commit_pix.detach()}
    if not ema:
        losses["codebook"] = F.mse_loss(xs.detach(), qs) + F.mse_loss(xp.detach(), qp)
    if xs.requires_grad:
        qs = straight_through(xs, qs)
    if xp.requires_grad:
        qp = straight_through(xp, qp)
    return qs, qp, losses, stats


class DualCodebook(nn.Module):
    """forward(x_sem [N, sem_dim], x_pix [N, pix_dim]) -> (q_sem, q_pix (unit rows, straight-through), ids [N],
    losses {"codebook" (not with EMA), "commitment"}, stats).

    `unit_codes` (class attribute): True here (codes are used and stored l2-normalised); the multi-scale
    residual quantizer (mmtok.families.tokenflow.multiscale) sets it False and reuses the k-means / EMA /
    restart machinery with raw (unnormalised) codes."""

    unit_codes: bool = True

    def __init__(self, cfg: DualCodebookConfig):
        super().__init__()
        self.cfg = cfg
        K = self.codebook_size = cfg.codebook_size
        sem = F.normalize(torch.randn(K, cfg.sem_dim), dim=1)
        pix = F.normalize(torch.randn(K, cfg.pix_dim), dim=1)
        if cfg.ema:
            self.register_buffer("codebook_sem", sem)
            self.register_buffer("codebook_pix", pix)
            self.register_buffer("ema_count", torch.ones(K))
            self.register_buffer("ema_sum_sem", sem.clone())
            self.register_buffer("ema_sum_pix", pix.clone())
        else:
            self.codebook_sem = nn.Parameter(sem)
            self.codebook_pix = nn.Parameter(pix)
        self.register_buffer("initted", torch.tensor(not cfg.kmeans_init))
        self.register_buffer("steps_unused", torch.zeros(K, dtype=torch.long))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------------------------------------ codes

    def codes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(semantic [K, sem_dim], pixel [K, pix_dim]) fp32 codes as used for search and output: unit rows
        (raw rows when `unit_codes` is False)."""
        if not self.unit_codes:
            return self.codebook_sem.float(), self.codebook_pix.float()
        return F.normalize(self.codebook_sem.float(), dim=1), F.normalize(self.codebook_pix.float(), dim=1)

    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of x l2-normalised when codes are unit rows, else x as it is."""
        return F.normalize(x, dim=1) if self.unit_codes else x

    def lookup(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(semantic [..., sem_dim], pixel [..., pix_dim]) unit code vectors of ids [...] in [0, K)."""
        sem, pix = self.codes()
        flat = ids.reshape(-1)
        return (F.embedding(flat, sem).reshape(*ids.shape, -1), F.embedding(flat, pix).reshape(*ids.shape, -1))

    def export_ids(self, x_sem: torch.Tensor, x_pix: torch.Tensor) -> torch.Tensor:
        """Ids [N] as the eval forward computes them (`nearest_dual`'s torch path op for op), export-safe: one
        addmm of the concatenated sqrt(w)-scaled unit vectors, then min (ties to the lowest index)."""
        ws, wp = math.sqrt(self.cfg.sem_weight), math.sqrt(self.cfg.pix_weight)
        x = torch.cat([F.normalize(x_sem.float(), dim=1) * ws, F.normalize(x_pix.float(), dim=1) * wp], dim=1)
        c = torch.cat([F.normalize(self.codebook_sem.float(), dim=1) * ws,
                       F.normalize(self.codebook_pix.float(), dim=1) * wp], dim=1)
        d = torch.addmm((c * c).sum(1).unsqueeze(0), x, c.T, beta=1.0, alpha=-2.0)
        return d.min(dim=1).indices

    # ------------------------------------------------------------------------------------------------ forward

    def forward(self, x_sem: torch.Tensor, x_pix: torch.Tensor):
        with torch.autocast(device_type=x_sem.device.type, enabled=False):
            xs, xp = F.normalize(x_sem.float(), dim=1), F.normalize(x_pix.float(), dim=1)
            if self.training and not bool(self.initted):
                self._kmeans_init(xs.detach(), xp.detach())
            ids = nearest_dual(x_sem.detach().float(), self.codebook_sem.detach().float(), x_pix.detach().float(),
                               self.codebook_pix.detach().float(), self.cfg.sem_weight, self.cfg.pix_weight)
            cs, cp = self.codes()
            qs, qp = F.embedding(ids, cs), F.embedding(ids, cp)
            qs, qp, losses, stats = vq_terms(xs, xp, qs, qp, ema=self.cfg.ema)
            counts = code_counts(ids, self.codebook_size, sync=self.training)
            if self.training:
                self._update_state(xs.detach(), xp.detach(), ids, counts)
        stats.update(usage_stats(counts))
        stats["restarts"] = self.restarts.detach().float()
        return qs, qp, ids, losses, stats

    # ------------------------------------------------------------------------------------------------ state

    def _joint(self, xs: torch.Tensor, xp: torch.Tensor) -> torch.Tensor:
        return torch.cat([xs * math.sqrt(self.cfg.sem_weight), xp * math.sqrt(self.cfg.pix_weight)], dim=1)

    @torch.no_grad()
    def _kmeans_init(self, xs: torch.Tensor, xp: torch.Tensor) -> None:
        """Both codebooks <- the two halves of k-means centroids of the joint (weighted) rows; once. Unit codes:
        each half normalised; raw codes (`unit_codes` False): each half divided back by sqrt(its weight)."""
        K = self.codebook_size
        weighted = self.cfg.sem_weight > 0 and self.cfg.pix_weight > 0  # a zero-weight half would not move
        if rank() == 0:
            gen = torch.Generator().manual_seed(torch.initial_seed())  # leaves the global RNG untouched
            joint = self._joint(xs, xp) if weighted else torch.cat([xs, xp], dim=1)
            centroids = kmeans(joint, K, self.cfg.kmeans_iters, l2_norm=False, generator=gen)
        else:
            centroids = xs.new_empty(K, xs.shape[1] + xp.shape[1])
        centroids = broadcast_from_rank0(centroids)
        ds = xs.shape[1]
        sem, pix = centroids[:, :ds], centroids[:, ds:]
        if self.unit_codes:
            sem, pix = F.normalize(sem, dim=1), F.normalize(pix, dim=1)
        elif weighted:
            sem, pix = sem / math.sqrt(self.cfg.sem_weight), pix / math.sqrt(self.cfg.pix_weight)
        self._set_codes(torch.ones(K, dtype=torch.bool, device=xs.device), sem, pix)
        self.initted.fill_(True)

    @torch.no_grad()
    def _update_state(self, xs, xp, ids, counts) -> None:
        cfg = self.cfg
        if cfg.ema:
            K = self.codebook_size
            sums_s = all_reduce_sum(torch.zeros(K, xs.shape[1], device=xs.device).index_add_(0, ids, xs))
            sums_p = all_reduce_sum(torch.zeros(K, xp.shape[1], device=xp.device).index_add_(0, ids, xp))
            d = cfg.ema_decay
            self.ema_count.mul_(d).add_(counts.to(self.ema_count.dtype), alpha=1 - d)
            self.ema_sum_sem.mul_(d).add_(sums_s, alpha=1 - d)
            self.ema_sum_pix.mul_(d).add_(sums_p, alpha=1 - d)
            n = self.ema_count.sum()
            smoothed = ((self.ema_count + cfg.ema_eps) / (n + K * cfg.ema_eps) * n).unsqueeze(1)
            self.codebook_sem.copy_(self._unit(self.ema_sum_sem / smoothed))
            self.codebook_pix.copy_(self._unit(self.ema_sum_pix / smoothed))
        dead = dead_codes(self.steps_unused, counts, self.ema_count if cfg.ema else None, cfg)
        if dead is not None:
            n_dead = int(dead.sum())
            if n_dead:
                rows = torch.randint(xs.shape[0], (n_dead,), device=xs.device)
                picks = broadcast_from_rank0(torch.cat([xs[rows], xp[rows]], dim=1).contiguous())
                ds = xs.shape[1]
                self._set_codes(dead, picks[:, :ds], picks[:, ds:])
                self.restarts.add_(n_dead)

    def _set_codes(self, mask: torch.Tensor, sem: torch.Tensor, pix: torch.Tensor) -> None:
        """Codes[mask] <- (sem, pix) (unit rows, or raw rows without `unit_codes`) in both codebooks; EMA stats
        restart as if seen once."""
        self.codebook_sem.data[mask] = sem.to(self.codebook_sem.dtype)
        self.codebook_pix.data[mask] = pix.to(self.codebook_pix.dtype)
        if self.cfg.ema:
            self.ema_sum_sem[mask] = sem.to(self.ema_sum_sem.dtype)
            self.ema_sum_pix[mask] = pix.to(self.ema_sum_pix.dtype)
            self.ema_count[mask] = 1.0
        self.steps_unused[mask] = 0
