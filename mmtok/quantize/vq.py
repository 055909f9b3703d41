"""The vector quantizer: one codebook of K codes in a low-dimensional code space (LlamaGen style).

Input z [..., input_dim] (channel-last) -> Linear to `dim` -> (l2-normalised) -> nearest code -> Linear
back to `input_dim`. All the math runs in fp32 whatever the autocast state or the input dtype.
Training-mode extras: k-means init on the first batch, EMA codebook updates, dead-code restarts.
Every piece of state is a parameter or buffer (`codebook`, `ema_count`, `ema_sum`, `steps_unused`,
`initted`, `restarts`), so a state_dict round trip resumes exactly.

Across ranks (torch.distributed): in training mode the code counts and EMA sums are all-reduced, and k-means
centroids and restarted codes are chosen on rank 0 and broadcast, so every rank applies the identical
update. Eval-mode forwards use no collectives (a rank may run them alone, e.g. sample callbacks), so their
stats are those of the local batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from mmtok.quantize.base import QuantizeOutput, projections
from mmtok.quantize.base import linear_fp32 as _linear
from mmtok.quantize.config import QuantizerConfig
from mmtok.quantize.lookup import nearest
from mmtok.quantize.stats import all_reduce_sum, broadcast_from_rank0, code_counts, rank, usage_stats
from mmtok.registry import QUANTIZERS


def straight_through(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Forward value q, gradient passed to x unchanged (x, q: [N, D])."""
    return x + (q - x).detach()


def rotate_to(x: torch.Tensor, q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rotation trick (Fifty et al. 2024): forward value q; the gradient reaching x [N, D] is the output
    gradient rotated by the rotation taking x's direction to q's and scaled by |q| / |x|."""
    x_norm = x.norm(dim=-1, keepdim=True).clamp_min(eps)
    q_norm = q.norm(dim=-1, keepdim=True).clamp_min(eps)
    u = (x / x_norm).detach()
    qh = (q / q_norm).detach()
    w = F.normalize(u + qh, dim=-1, eps=eps).detach()
    rotated = x - 2 * (x * w).sum(-1, keepdim=True) * w + 2 * (x * u).sum(-1, keepdim=True) * qh
    return rotated * (q_norm / x_norm).detach()


def normalize_rows(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """F.normalize(x, dim=1) (bitwise the same for rows of norm > eps), but an all-zero row (digital silence
    through a bias-free encoder) stays zero with gradient 1 instead of F.normalize's 1 / eps = 1e12."""
    norm = x.norm(dim=1, keepdim=True)
    return x / torch.where(norm > eps, norm, torch.ones_like(norm))


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, iters: int, *, l2_norm: bool, generator: torch.Generator | None = None):
    """Centroids [k, D] of x [N, D] by Lloyd's algorithm (spherical when l2_norm), starting from k rows of x
    drawn at random (with replacement when N < k). A centroid whose cluster empties keeps its value."""
    n = x.shape[0]
    idx = torch.randperm(n, generator=generator)[:k] if n >= k else torch.randint(n, (k,), generator=generator)
    c = x[idx.to(x.device)].clone()
    for _ in range(iters):
        ids = nearest(x, c, "l2")
        counts = torch.bincount(ids, minlength=k).unsqueeze(1)
        new = torch.zeros_like(c).index_add_(0, ids, x) / counts.clamp_min(1).to(x.dtype)
        if l2_norm:
            new = F.normalize(new, dim=1)
        c = torch.where(counts > 0, new, c)
    return c


@QUANTIZERS.register("vq")
class VectorQuantizer(nn.Module):
    """Vector quantizer over `cfg.codebook_size` codes of `cfg.dim` dims for inputs of `input_dim` channels.

    forward(z [..., input_dim]) -> QuantizeOutput(z_q [..., input_dim] in z's dtype, ids [...] long,
    losses {"commitment", "codebook" (not with EMA), "entropy" (with entropy_loss)}: unweighted fp32
    scalars, stats {"usage", "perplexity", "entropy_bits", "restarts"}: detached fp32 scalars).
    lookup(ids) gives the same vectors as forward's z_q (bitwise in eval under no_grad).
    """

    entropy_chunk: int = 4096  # rows of the entropy loss's softmax held at a time

    def __init__(self, input_dim: int, cfg: QuantizerConfig, *, entropy_loss: bool = False):
        super().__init__()
        if input_dim < 1:
            raise ValueError(f"input_dim must be >= 1, got {input_dim}")
        self.cfg = cfg
        self.input_dim, self.dim, self.codebook_size, self.num_codebooks = input_dim, cfg.dim, cfg.codebook_size, 1
        self.entropy_loss = entropy_loss
        self.proj_in, self.proj_out = projections(input_dim, cfg.dim, cfg.projection == "linear")

        K, D = cfg.codebook_size, cfg.dim
        codes = torch.empty(K, D).uniform_(-1.0 / K, 1.0 / K)
        if cfg.l2_norm:
            codes = F.normalize(codes, dim=1)
        if cfg.ema:  # updated in place by the EMA, never by gradient
            self.register_buffer("codebook", codes)
            self.register_buffer("ema_count", torch.ones(K))  # smoothed count = 1 => codebook = ema_sum
            self.register_buffer("ema_sum", codes.clone())
        else:
            self.codebook = nn.Parameter(codes)
        self.register_buffer("initted", torch.tensor(not cfg.kmeans_init))
        self.register_buffer("steps_unused", torch.zeros(K, dtype=torch.long))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------------------------------- lookup

    def codes(self) -> torch.Tensor:
        """The codebook as used for search: fp32 [K, dim], l2-normalised when cfg.l2_norm."""
        c = self.codebook.clone().float()  # a copy: in-place state updates must not touch the autograd graph
        return F.normalize(c, dim=1) if self.cfg.l2_norm else c

    @property
    def raw_output(self) -> bool:
        """True when the decoder receives the raw codebook rows (cfg.code_output "raw", DAC), not the searched codes."""
        return self.cfg.code_output == "raw"

    def output_codes(self) -> torch.Tensor:
        """The codebook as the decoder receives it: fp32 [K, dim] (the search codes, or the raw rows)."""
        return self.codebook.clone().float() if self.raw_output else self.codes()

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors [..., input_dim] (fp32) for ids [...] in [0, K)."""
        with torch.autocast(device_type=ids.device.type, enabled=False):
            q = F.embedding(ids.reshape(-1), self.output_codes())
            return _linear(self.proj_out, q).reshape(*ids.shape, self.input_dim)

    # ------------------------------------------------------------------------------------------- export-safe

    def export_ids(self, x: torch.Tensor) -> torch.Tensor:
        """Ids [N] of rows x [N, input_dim] (fp32) as the eval-mode forward computes them, with no data-dependent
        control flow (torch.export): ||c||^2 - 2 x.c in one addmm, min over codes (ties to the lowest index)."""
        h = _linear(self.proj_in, x)
        if self.cfg.l2_norm:
            h = normalize_rows(h)
        c = self.codebook.float()
        c = F.normalize(c, dim=1) if self.cfg.l2_norm else c
        d = torch.addmm((c * c).sum(1).unsqueeze(0), h, c.T, beta=1.0, alpha=-2.0)
        return d.min(dim=1).indices

    def export_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors [N, input_dim] (fp32) of ids [N], export-safe."""
        c = self.codebook.float()
        normalize = self.cfg.l2_norm and not self.raw_output
        return _linear(self.proj_out, F.embedding(ids, F.normalize(c, dim=1) if normalize else c))

    # ------------------------------------------------------------------------------------------- forward

    def forward(self, z: torch.Tensor) -> QuantizeOutput:
        if z.shape[-1:] != (self.input_dim,) or not z.is_floating_point():
            raise ValueError(f"VectorQuantizer expects a float tensor [..., {self.input_dim}], "
                             f"got {z.dtype} {tuple(z.shape)}")
        with torch.autocast(device_type=z.device.type, enabled=False):
            x = _linear(self.proj_in, z.reshape(-1, self.input_dim).float())  # [N, dim]
            raw = x
            if self.cfg.l2_norm:
                x = normalize_rows(x)
            if self.training and not bool(self.initted):
                self._kmeans_init(x.detach())
            codes = self.codes()
            ids = nearest(x.detach(), codes.detach(), "l2")
            entropy = (code_entropy(x, codes, self.cfg.entropy_temperature, self.entropy_chunk)  # searched rows
                       if self.entropy_loss else None)
            if self.raw_output:  # DAC: searched on normalised vectors; the raw row and raw input carry on
                x, codes = raw, self.output_codes()
            q = F.embedding(ids, codes)
            losses = {"commitment": F.mse_loss(x, q.detach())}
            if not self.cfg.ema:
                losses["codebook"] = F.mse_loss(x.detach(), q)
            if entropy is not None:
                losses["entropy"] = entropy
            if x.requires_grad:
                q = rotate_to(x, q) if self.cfg.gradient == "rotation" else straight_through(x, q)
            counts = code_counts(ids, self.codebook_size, sync=self.training)
            if self.training:
                self._update_state(x.detach(), ids, counts)
            z_q = _linear(self.proj_out, q).reshape(z.shape).to(z.dtype)
        stats = usage_stats(counts)
        stats["restarts"] = self.restarts.detach().float()
        return QuantizeOutput(z_q=z_q, ids=ids.reshape(z.shape[:-1]), losses=losses, stats=stats)

    # ------------------------------------------------------------------------------------------- state updates

    @torch.no_grad()
    def _kmeans_init(self, x: torch.Tensor) -> None:
        """Codes <- k-means centroids of this batch on rank 0, broadcast to all ranks; runs once."""
        K = self.codebook_size
        if rank() == 0:
            gen = torch.Generator().manual_seed(torch.initial_seed())  # leaves the global RNG untouched
            centroids = kmeans(x, K, self.cfg.kmeans_iters, l2_norm=self.cfg.l2_norm, generator=gen)
        else:
            centroids = x.new_empty(K, self.dim)
        self._set_codes(torch.ones(K, dtype=torch.bool, device=x.device), broadcast_from_rank0(centroids))
        self.initted.fill_(True)

    @torch.no_grad()
    def _update_state(self, x: torch.Tensor, ids: torch.Tensor, counts: torch.Tensor) -> None:
        """EMA update from this step's (global) assignments, then restart of codes unused too long."""
        cfg = self.cfg
        if cfg.ema:
            sums = all_reduce_sum(torch.zeros(self.codebook_size, self.dim, device=x.device).index_add_(0, ids, x))
            d = cfg.ema_decay
            self.ema_count.mul_(d).add_(counts.to(self.ema_count.dtype), alpha=1 - d)
            self.ema_sum.mul_(d).add_(sums.to(self.ema_sum.dtype), alpha=1 - d)
            n = self.ema_count.sum()
            smoothed = (self.ema_count + cfg.ema_eps) / (n + self.codebook_size * cfg.ema_eps) * n
            new = self.ema_sum / smoothed.unsqueeze(1)
            self.codebook.copy_(F.normalize(new, dim=1) if cfg.l2_norm else new)
        dead = dead_codes(self.steps_unused, counts, self.ema_count if cfg.ema else None, cfg)
        if dead is not None:
            n_dead = int(dead.sum())
            if n_dead:
                # every rank draws (same RNG consumption everywhere); rank 0's draw is used
                picks = x[torch.randint(x.shape[0], (n_dead,), device=x.device)].contiguous()
                self._set_codes(dead, broadcast_from_rank0(picks))
                self.restarts.add_(n_dead)

    def _set_codes(self, mask: torch.Tensor, new: torch.Tensor) -> None:
        """Codes[mask] <- new [mask.sum(), dim] (already normalised when l2_norm); their EMA stats and
        unused-step counters restart as if each had been seen once."""
        self.codebook[mask] = new.to(self.codebook.dtype)
        if self.cfg.ema:
            self.ema_sum[mask] = new.to(self.ema_sum.dtype)
            self.ema_count[mask] = 1.0
        self.steps_unused[mask] = 0


def dead_codes(steps_unused: torch.Tensor, counts: torch.Tensor, ema_count: torch.Tensor | None,
               cfg) -> torch.Tensor | None:
    """Which codes to restart this step (bool [K]), or None when `cfg` restarts nothing: codes unused for
    `cfg.restart_after` steps, and with `cfg.restart_below` those whose EMA count is below that fraction of the
    mean. Advances `steps_unused` in place. Built from global counts, so identical on every rank."""
    if cfg.restart_after <= 0 and cfg.restart_below <= 0:
        return None
    steps_unused.add_(1).masked_fill_(counts > 0, 0)
    dead = steps_unused >= cfg.restart_after if cfg.restart_after > 0 else torch.zeros_like(counts > 0)
    if cfg.restart_below > 0:  # the configs require ema for it
        dead |= ema_count < cfg.restart_below * ema_count.mean()
    return dead


def code_entropy(x: torch.Tensor, codes: torch.Tensor, temperature: float, chunk: int = 4096,
                 diversity: float = 1.0) -> torch.Tensor:
    """The entropy loss of rows x [N, D] against codes [K, D] (nats): the mean per-row entropy of
    softmax(-|x - c|^2 / T) (low: each row confident of its code) minus `diversity` times the entropy of the rows'
    mean distribution (high: the rows spread over the codebook). Rows go through `chunk` at a time under activation
    checkpointing, so forward and backward hold O(chunk x K) activations."""
    n = x.shape[0]
    ent_sum, p_sum = x.new_zeros(()), x.new_zeros(codes.shape[0])
    for start in range(0, n, chunk):
        args = (x[start : start + chunk], codes, temperature)
        if torch.is_grad_enabled():
            e, p = checkpoint(_entropy_chunk, *args, use_reentrant=False)
        else:
            e, p = _entropy_chunk(*args)
        ent_sum, p_sum = ent_sum + e, p_sum + p
    avg = p_sum / max(n, 1)
    return ent_sum / max(n, 1) + diversity * (avg * torch.log(avg.clamp_min(1e-12))).sum()


def _entropy_chunk(xs: torch.Tensor, codes: torch.Tensor, temperature: float):
    """(sum over rows of the softmax entropy, sum over rows of the softmax) for one chunk of rows."""
    # -|x - c|^2 up to a per-row constant, which softmax ignores
    logits = (2 * xs @ codes.T - (codes * codes).sum(1)) / temperature
    logp = torch.log_softmax(logits, dim=1)
    p = logp.exp()
    return -(p * logp).sum(), p.sum(0)

