"""torch.export graphs of a tokenizer: `encoder.pt2` (inputs -> ids) and `decoder.pt2` (ids -> outputs).

Both graphs have a dynamic batch dimension and fixed spatial size (the bundle's resolution), run in fp32,
and load with plain torch (no mmtok import):

    enc = torch.export.load("encoder.pt2").module()   # [B, 3, R, R] float32 in [-1, 1] -> [B, h, w] int64
    dec = torch.export.load("decoder.pt2").module()   # [B, h, w] int64 in [0, K) -> [B, 3, R, R] in [-1, 1]

The quantizer's training forward has data-dependent parts (bincount statistics, the k-means flag, Python
ints from tensors), so the graphs are made from eval-only modules the tokenizer gives (`graph_modules()`),
which repeat the eager inference path op for op through the quantizer's export-safe `export_ids` /
`export_vectors` (every quantizer kind owns them; nothing here branches on a kind). Shapes come from the
tokenizer's `meta`. `check_graphs` verifies that the graphs give the eager model's ids exactly and its
outputs to 1e-5.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

ENCODER_FILE = "encoder.pt2"
DECODER_FILE = "decoder.pt2"
MAX_BATCH = 4096


def example_ids(spec, batch: int = 2) -> torch.Tensor:
    """Zero ids of a mmtok.contract.TokenSpec's shape, [B, *spec.ids_shape]."""
    return torch.zeros(batch, *spec.ids_shape, dtype=torch.long)


def export_graphs(tokenizer: nn.Module, out_dir: str | Path) -> dict[str, Path]:
    """Write encoder.pt2 and decoder.pt2 of an eval-mode tokenizer on CPU into `out_dir`; returns their paths.
    The tokenizer gives the modules (`graph_modules()`: export-safe encode and decode) and its `meta` the shapes."""
    tokenizer = tokenizer.cpu().eval()
    encode, decode = tokenizer.graph_modules()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    images = torch.zeros(2, *tokenizer.meta["input_size"])
    ids = example_ids(tokenizer.spec)
    out_dir = Path(out_dir)
    with torch.no_grad():
        enc = torch.export.export(encode.eval(), (images,), dynamic_shapes=({0: batch},))
        dec = torch.export.export(decode.eval(), (ids,), dynamic_shapes=({0: batch},))
    paths = {"encoder": out_dir / ENCODER_FILE, "decoder": out_dir / DECODER_FILE}
    torch.export.save(enc, str(paths["encoder"]))
    torch.export.save(dec, str(paths["decoder"]))
    return paths


def clamp_to_range(x: torch.Tensor, meta: dict) -> torch.Tensor:
    """x clamped to the token spec's value range (left as it is when the range is unbounded: None)."""
    lo, hi = meta.get("value_range", (-1.0, 1.0))
    return x if lo is None or hi is None else x.clamp(lo, hi)


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
        want = clamp_to_range(tokenizer.decode(want_ids), tokenizer.meta)
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

    tokenizer = tokenizer.cpu().eval()
    encode, decode = tokenizer.graph_modules()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    out_dir = Path(out_dir)
    paths = {"encoder": out_dir / ONNX_ENCODER_FILE, "decoder": out_dir / ONNX_DECODER_FILE}
    images = torch.zeros(2, *tokenizer.meta["input_size"])
    ids = example_ids(tokenizer.spec)
    # weights inside the .onnx file unless protobuf's 2 GB limit forces them into FILE.onnx.data beside it
    external = sum(p.numel() * p.element_size() for p in tokenizer.state_dict().values()) > 1.5e9
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(encode.eval(), (images,), str(paths["encoder"]), dynamo=True,
                          dynamic_shapes=({0: batch},), input_names=["images"], output_names=["ids"],
                          verbose=False, external_data=external)
        torch.onnx.export(decode.eval(), (ids,), str(paths["decoder"]), dynamo=True,
                          dynamic_shapes=({0: batch},), input_names=["ids"], output_names=["images"],
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
        want = clamp_to_range(tokenizer.decode(torch.from_numpy(want_ids)), tokenizer.meta).numpy()
    got_ids = enc.run(None, {"images": images.numpy()})[0]
    if not np.array_equal(got_ids, want_ids):
        raise RuntimeError(f"encoder.onnx gives different ids than the eager model at "
                           f"{int((got_ids != want_ids).sum())} of {want_ids.size} positions")
    err = float(np.abs(dec.run(None, {"ids": want_ids})[0] - want).max())
    if err > 1e-4:
        raise RuntimeError(f"decoder.onnx differs from the eager model by up to {err:.3g}")
    return True
