"""torch.export graphs of a VQGAN: `encoder.pt2` (images -> ids) and `decoder.pt2` (ids -> images).

Both graphs have a dynamic batch dimension and fixed spatial size (the bundle's resolution), run in fp32,
and load with plain torch (no mmtok import):

    enc = torch.export.load("encoder.pt2").module()   # [B, 3, R, R] float32 in [-1, 1] -> [B, h, w] int64
    dec = torch.export.load("decoder.pt2").module()   # [B, h, w] int64 in [0, K) -> [B, 3, R, R] in [-1, 1]

The quantizer's training forward has data-dependent parts (bincount statistics, the k-means flag, Python
ints from tensors), so the graphs are made from eval-only wrappers that repeat the eager inference path
op for op (`quantize_ids`, `code_vectors`; every quantizer kind: vq, rvq, fsq, lfq). For VQ: encoder -> proj_in ->
l2-normalise -> ||c||^2 - 2 x.c (one addmm) -> min over codes (ties to the lowest index); embedding -> proj_out
-> decoder -> clamp to [-1, 1]. `check_graphs` verifies that they
give the eager model's ids exactly and its pixels to 1e-5.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mmtok.quantize.base import linear_fp32 as _linear

ENCODER_FILE = "encoder.pt2"
DECODER_FILE = "decoder.pt2"
MAX_BATCH = 4096


def _codes(codebook: torch.Tensor, l2_norm: bool) -> torch.Tensor:
    c = codebook.float()
    return F.normalize(c, dim=1) if l2_norm else c


def _vq_ids(q: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One VectorQuantizer: rows x [N, input_dim] fp32 -> ids [N] (the torch lookup path's key, ties low)."""
    h = _linear(q.proj_in, x)
    if q.cfg.l2_norm:
        h = F.normalize(h, dim=1)
    c = _codes(q.codebook, q.cfg.l2_norm)
    d = torch.addmm((c * c).sum(1).unsqueeze(0), h, c.T, beta=1.0, alpha=-2.0)  # ||c||^2 - 2 x.c
    return d.min(dim=1).indices


def _vq_vectors(q: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return _linear(q.proj_out, F.embedding(ids, _codes(q.codebook, q.cfg.l2_norm)))


def quantize_ids(q: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Ids of rows x [N, input_dim] (fp32) for any quantizer kind, as its eval-mode forward computes them, with
    no data-dependent control flow: [N], or [N, levels] for a residual quantizer."""
    kind = q.cfg.kind
    if kind == "vq":
        return _vq_ids(q, x)
    if kind == "rvq":
        ids, residual = [], x
        for level in q.quantizers:
            level_ids = _vq_ids(level, residual)
            residual = residual - _vq_vectors(level, level_ids)
            ids.append(level_ids)
        return torch.stack(ids, dim=-1)
    if kind == "fsq":
        levels = torch.round(q.bound(_linear(q.proj_in, x)))
        return ((levels.long() + q.half_width) * q.basis).sum(-1)
    if kind == "lfq":
        return ((_linear(q.proj_in, x) > 0).long() * q.basis).sum(-1)
    raise ValueError(f"no export graph for quantizer kind {kind!r}")


def code_vectors(q: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Code vectors [N, input_dim] (fp32) for ids [N] (or [N, n] levels of a residual quantizer)."""
    kind = q.cfg.kind
    if kind == "vq":
        return _vq_vectors(q, ids)
    if kind == "rvq":
        out = _vq_vectors(q.quantizers[0], ids[:, 0])
        for i in range(1, ids.shape[1]):
            out = out + _vq_vectors(q.quantizers[i], ids[:, i])
        return out
    if kind in ("fsq", "lfq"):
        return _linear(q.proj_out, q.ids_to_codes(ids))
    raise ValueError(f"no export graph for quantizer kind {kind!r}")


class EncodeGraph(nn.Module):
    """Images [B, C, R, R] in [-1, 1] -> ids [B, R/f, R/f] (int64; [..., levels] for a residual quantizer),
    the eager `VQGAN.encode` in eval mode."""

    def __init__(self, tokenizer: nn.Module):
        super().__init__()
        self.encoder = tokenizer.encoder
        self.quantizer = tokenizer.quantizer
        self.input_dim = int(tokenizer.quantizer.input_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        z = self.encoder(images)
        b, _, h, w = z.shape
        ids = quantize_ids(self.quantizer, z.permute(0, 2, 3, 1).reshape(-1, self.input_dim).float())
        return ids.reshape(b, h, w, *ids.shape[1:])


class DecodeGraph(nn.Module):
    """Ids [B, h, w] (int64 in [0, K); [B, h, w, levels] for a residual quantizer) -> images [B, C, h*f, w*f]
    clamped to [-1, 1]."""

    def __init__(self, tokenizer: nn.Module):
        super().__init__()
        self.decoder = tokenizer.decoder
        self.quantizer = tokenizer.quantizer
        self.input_dim = int(tokenizer.quantizer.input_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b, h, w = ids.shape[:3]
        flat = ids.reshape(b * h * w, *ids.shape[3:])
        z = code_vectors(self.quantizer, flat).reshape(b, h, w, self.input_dim).permute(0, 3, 1, 2)
        return self.decoder(z).clamp(-1.0, 1.0)


def export_graphs(tokenizer: nn.Module, out_dir: str | Path) -> dict[str, Path]:
    """Write encoder.pt2 and decoder.pt2 for an eval-mode VQGAN on CPU into `out_dir`; returns their paths."""
    cfg = tokenizer.cfg
    r, g = cfg.resolution, cfg.resolution // cfg.downsample
    tokenizer = tokenizer.cpu().eval()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    images = torch.zeros(2, cfg.in_channels, r, r)
    levels = getattr(cfg.quantizer, "levels", None) if cfg.quantizer.kind == "rvq" else None
    ids = torch.zeros(2, g, g, *([levels] if levels else []), dtype=torch.long)
    out_dir = Path(out_dir)
    with torch.no_grad():
        enc = torch.export.export(EncodeGraph(tokenizer).eval(), (images,), dynamic_shapes={"images": {0: batch}})
        dec = torch.export.export(DecodeGraph(tokenizer).eval(), (ids,), dynamic_shapes={"ids": {0: batch}})
    paths = {"encoder": out_dir / ENCODER_FILE, "decoder": out_dir / DECODER_FILE}
    torch.export.save(enc, str(paths["encoder"]))
    torch.export.save(dec, str(paths["decoder"]))
    return paths


def check_graphs(tokenizer: nn.Module, out_dir: str | Path, images: torch.Tensor) -> None:
    """Reload the saved graphs and compare them with the eager model on `images` ([B, C, R, R] in [-1, 1]):
    ids must be equal and pixels within 1e-5. Raises RuntimeError naming the difference."""
    out_dir = Path(out_dir)
    enc = torch.export.load(str(out_dir / ENCODER_FILE)).module()
    dec = torch.export.load(str(out_dir / DECODER_FILE)).module()
    with torch.no_grad():
        want_ids = tokenizer.encode(images)
        got_ids = enc(images)
        if not torch.equal(got_ids, want_ids):
            n = int((got_ids != want_ids).sum())
            raise RuntimeError(f"encoder.pt2 gives different ids than the eager model at {n} positions")
        want = tokenizer.decode(want_ids).clamp(-1, 1)
        got = dec(want_ids)
        err = float((got - want).abs().max())
        if err > 1e-5:
            raise RuntimeError(f"decoder.pt2 differs from the eager model by up to {err:.3g}")


# ------------------------------------------------------------------------------------------------ ONNX

ONNX_ENCODER_FILE = "encoder.onnx"
ONNX_DECODER_FILE = "decoder.onnx"


def onnx_missing() -> list[str]:
    """The packages torch.onnx.export (dynamo) needs that are not installed here (onnx, onnxscript)."""
    import importlib.util

    return [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]


def export_onnx(tokenizer: nn.Module, out_dir: str | Path) -> dict[str, Path]:
    """Write encoder.onnx / decoder.onnx (fp32, dynamic batch; inputs "images" / "ids", outputs "ids" /
    "images") from the same eval-only wrappers as the .pt2 graphs, with torch.onnx.export(dynamo=True)."""
    import warnings

    cfg = tokenizer.cfg
    r, g = cfg.resolution, cfg.resolution // cfg.downsample
    tokenizer = tokenizer.cpu().eval()
    levels = getattr(cfg.quantizer, "levels", None) if cfg.quantizer.kind == "rvq" else None
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    out_dir = Path(out_dir)
    paths = {"encoder": out_dir / ONNX_ENCODER_FILE, "decoder": out_dir / ONNX_DECODER_FILE}
    images = torch.zeros(2, cfg.in_channels, r, r)
    ids = torch.zeros(2, g, g, *([levels] if levels else []), dtype=torch.long)
    # weights inside the .onnx file unless protobuf's 2 GB limit forces them into FILE.onnx.data beside it
    external = sum(p.numel() * p.element_size() for p in tokenizer.state_dict().values()) > 1.5e9
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(EncodeGraph(tokenizer).eval(), (images,), str(paths["encoder"]), dynamo=True,
                          dynamic_shapes={"images": {0: batch}}, input_names=["images"], output_names=["ids"],
                          verbose=False, external_data=external)
        torch.onnx.export(DecodeGraph(tokenizer).eval(), (ids,), str(paths["decoder"]), dynamo=True,
                          dynamic_shapes={"ids": {0: batch}}, input_names=["ids"], output_names=["images"],
                          verbose=False, external_data=external)
    return paths


def check_onnx(tokenizer: nn.Module, out_dir: str | Path, images: torch.Tensor) -> bool:
    """Run the ONNX graphs with onnxruntime (when installed) against the eager model: ids equal, pixels within
    1e-4. Returns False when onnxruntime is not installed (nothing checked); raises RuntimeError on a mismatch."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return False
    import numpy as np
    import onnxruntime as ort

    out_dir = Path(out_dir)
    enc = ort.InferenceSession(str(out_dir / ONNX_ENCODER_FILE), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(out_dir / ONNX_DECODER_FILE), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want_ids = tokenizer.encode(images).numpy()
        want = tokenizer.decode(torch.from_numpy(want_ids)).clamp(-1, 1).numpy()
    got_ids = enc.run(None, {"images": images.numpy()})[0]
    if not np.array_equal(got_ids, want_ids):
        raise RuntimeError(f"encoder.onnx gives different ids than the eager model at "
                           f"{int((got_ids != want_ids).sum())} of {want_ids.size} positions")
    err = float(np.abs(dec.run(None, {"ids": want_ids})[0] - want).max())
    if err > 1e-4:
        raise RuntimeError(f"decoder.onnx differs from the eager model by up to {err:.3g}")
    return True
