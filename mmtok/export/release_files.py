"""Reading released tokenizers' files safely: PyTorch files with `weights_only=True` always (`read_torch`: a file
that pickles plain-data objects, LlamaGen's argparse.Namespace or a Lightning 1.x callback class used as a dict key,
is read with each such global replaced by an inert `Opaque` record that keeps the pickled state as data and runs
none of the release's code; any other pickled global is refused), transformers folders (`read_hf_folder`,
`read_safetensors`, sharded or not), and weight-norm pairs merged into plain weights (`merge_weight_norm`), which
is what mmtok.export.interop's name rules speak of."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from mmtok.errors import CheckpointError


class Opaque:
    """A pickled object from a release file, kept as data and never executed: `name` is the global the file
    names (e.g. argparse.Namespace), `args` what it was called with, `state` what it was given (a Namespace's
    attributes)."""

    name = "?"

    def __init__(self, *args, **kwargs):
        self.args, self.state = args, kwargs or None

    def __setstate__(self, state):
        self.state = state

    def __reduce__(self):  # never pickled again
        raise TypeError(f"{self.name} was read as an opaque record and cannot be pickled")

    def as_dict(self) -> dict:
        """The recorded state as a plain dict ({} when it is not one)."""
        s = self.state
        if isinstance(s, tuple) and s and isinstance(s[-1], dict):
            s = s[-1]
        return dict(s) if isinstance(s, dict) else {}


def _opaque_class(name: str) -> type:
    return type("Opaque", (Opaque,), {"name": name, "__module__": __name__})


# Pickled globals that releases use as plain data records: LlamaGen pickles its argparse.Namespace; Lightning 1.x
# checkpoints (taming's) key their callback states by the callback class. Anything else is refused.
RECORD_GLOBALS = ("argparse.Namespace",)
RECORD_PREFIXES = ("pytorch_lightning.callbacks.", "lightning.pytorch.callbacks.")


def read_torch(path: str | os.PathLike, what: str) -> tuple[Any, list[str]]:
    """(the object in a PyTorch file, the globals that were read as `Opaque` records). `weights_only=True` always;
    the record globals above become inert `Opaque` stand-ins, any other pickled global is refused. CheckpointError
    (one line) for a missing, truncated or corrupt file, one that is not a PyTorch file, or one that pickles
    objects that are not plain data."""
    import pickle

    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no {what} at {p}", hint="give the path of the released file")
    try:
        return torch.load(p, map_location="cpu", weights_only=True), []
    except pickle.UnpicklingError:
        pass  # plain-data objects inside: read them as Opaque records below
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise _unreadable(p, what, e) from None
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(p)
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise _unreadable(p, what, e) from None
    foreign = [n for n in names if n not in RECORD_GLOBALS and not n.startswith(RECORD_PREFIXES)]
    if foreign:
        raise CheckpointError(f"{p} pickles {', '.join(sorted(foreign)[:3])}, which is not plain data: refused "
                              "(nothing in the file was run)", hint=f"a {what} holds tensors, numbers, strings and "
                              "containers; this file is another kind of file, or was tampered with")
    try:
        stand_ins = [(_opaque_class(n), n) for n in names]
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(p, map_location="cpu", weights_only=True), sorted(names)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError, AttributeError, TypeError) as e:
        raise _unreadable(p, what, e) from None


def _unreadable(p: Path, what: str, e: Exception) -> CheckpointError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    return CheckpointError(f"{p} is not a readable {what} ({type(e).__name__}: {first})",
                           hint="the file is truncated, corrupt or of another format; download it again or "
                           "check the format name")


def read_safetensors(files: list[Path], prefix: str = "") -> dict[str, Any]:
    """Every tensor whose key starts with `prefix` from safetensors `files`, the prefix removed."""
    from safetensors import SafetensorError, safe_open

    out = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as h:
                for k in h.keys():
                    if k.startswith(prefix):
                        out[k[len(prefix):]] = h.get_tensor(k)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{f} is not a readable safetensors file ({str(e)[:160]})",
                                  hint="the file is truncated or corrupt; download it again") from None
    return out


def read_hf_folder(path: str | os.PathLike) -> tuple[dict, list[Path]]:
    """(config.json, the weight files) of a transformers model folder (model.safetensors, or the shards its
    index names). Only safetensors: a folder with pytorch_model.bin alone is refused."""
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"{p} is not a folder", hint="give the transformers model folder (config.json + "
                              "model.safetensors), e.g. what save_pretrained wrote")
    cfg_file = p / "config.json"
    try:
        config = json.loads(cfg_file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{p} has no config.json: not a transformers model folder") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_file} is not valid JSON ({e})") from None
    index = p / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        except (ValueError, AttributeError) as e:
            raise CheckpointError(f"{index} is not a valid safetensors index ({str(e)[:120]})") from None
        files = [p / s for s in shards]
    else:
        files = [p / "model.safetensors"]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        extra = " (only pytorch_model.bin: convert it with save_pretrained(safe_serialization=True))" \
            if (p / "pytorch_model.bin").is_file() else ""
        raise CheckpointError(f"{p} lacks {', '.join(absent)}{extra}", hint="copy the whole model folder")
    return config, files


def merge_weight_norm(tensors: Mapping[str, Any]) -> dict[str, Any]:
    """Release tensors with every weight-norm pair merged into `X.weight` = g * v / ||v||: `X.weight_g` / `X.weight_v`
    (torch.nn.utils.weight_norm, as EnCodec's and DAC's own code save them) and `X.parametrizations.weight.original0
    / original1` (as transformers saves them). The norm runs over every dimension but the one g keeps (the
    dimension of v as long as g has elements), or over the whole tensor when g is one number."""
    import torch

    out = dict(tensors)
    for key in [k for k in tensors if k.endswith(".parametrizations.weight.original0")]:  # parametrizations API
        stem = key[: -len(".parametrizations.weight.original0")]
        if f"{stem}.parametrizations.weight.original1" in tensors:
            out[f"{stem}.weight_g"] = out.pop(key)
            out[f"{stem}.weight_v"] = out.pop(f"{stem}.parametrizations.weight.original1")
    tensors = dict(out)
    for key in [k for k in tensors if k.endswith(".weight_g")]:
        stem = key[: -len("_g")]
        if stem + "_v" not in tensors:
            continue
        g, v = out.pop(key), out.pop(stem + "_v")
        if g.numel() == 1:  # weight_norm(dim=None), or the kept dimension has size 1: the whole tensor's norm
            norm = v.norm()
        else:
            dim = next(d for d in range(v.dim()) if v.shape[d] == g.numel())
            norm = torch.norm_except_dim(v, 2, dim)
        out[stem] = g * v / norm
    return out
