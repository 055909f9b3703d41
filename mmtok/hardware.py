"""The one place a device request (`accelerator`, `devices`, `strategy`) is checked against this machine.

`mmtok train` (recipe `trainer.*`), `mmtok eval` (`--accelerator`, `--devices`) and `mmtok encode` / `decode`
(`--device`) all resolve their request here, so the vocabulary is the same everywhere (`auto`, `cpu`, `gpu`;
`cuda` is accepted as another name for `gpu`) and a request this machine cannot satisfy is one line
(an MmtokError with a hint) before any work starts, not a Lightning or CUDA traceback.
"""
from __future__ import annotations

from typing import Union

import torch

from mmtok.errors import MmtokError

ACCELERATORS = ("auto", "cpu", "gpu")
ALIASES = {"cuda": "gpu"}
STRATEGIES = ("auto", "ddp", "fsdp")

Devices = Union[int, str, list]


def _gpus() -> int:
    """CUDA devices visible to this process (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _no_gpu_hint(what: str) -> str:
    return (f"this machine has no usable CUDA GPU (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda or 'none'}); use the CPU ({what}), or check the driver and "
            "CUDA_VISIBLE_DEVICES with `mmtok doctor`")


def resolve(accelerator: str, devices: Devices = "auto", strategy: str = "auto") -> tuple[str, Union[int, list[int]]]:
    """Check a device request against this machine; return `(accelerator, devices)` ready for Lightning.

    Arguments:
      accelerator: "auto", "cpu", "gpu" (or "cuda", the same as "gpu"), any case.
      devices: a count >= 1 (GPUs on "gpu", processes on "cpu"), "auto", or a list of GPU ids (ints >= 0).
      strategy: "auto", "ddp" or "fsdp" (only checked here: FSDP needs CUDA GPUs).

    Returns:
      accelerator: "gpu" or "cpu", never "auto": "auto" is "gpu" when CUDA is available, else "cpu".
      devices: an int >= 1, or a non-empty list of distinct GPU ids (only with "gpu"), never "auto":
        "auto" is every visible GPU (torch.cuda.device_count()) on "gpu" and 1 on "cpu".

    Raises MmtokError (one line and a hint) when: the accelerator or strategy is unknown; devices is not one of
    the forms above; "gpu" is asked (or GPU ids are given) without CUDA; FSDP is asked on the CPU (Lightning
    supports FSDP on CUDA only); more GPUs, or a GPU id, are asked than this machine has.
    """
    name = ALIASES.get(str(accelerator).lower(), str(accelerator).lower())
    if name not in ACCELERATORS:
        raise MmtokError(f"unknown accelerator {accelerator!r}", hint="use auto, cpu or gpu (cuda is the same as gpu)")
    if strategy not in STRATEGIES:
        raise MmtokError(f"unknown strategy {strategy!r}", hint="use " + ", ".join(STRATEGIES))
    devices = _check_devices(devices)
    n_gpus = _gpus()
    if name == "auto":
        name = "gpu" if n_gpus else "cpu"
    if name == "cpu" and isinstance(devices, list):
        if not n_gpus:
            raise MmtokError(f"GPU ids {devices} were given but there is no CUDA GPU",
                             hint=_no_gpu_hint(f"devices: a number of processes such as {len(devices)}"))
        raise MmtokError(f"GPU ids {devices} were given with the cpu accelerator",
                         hint="use the gpu accelerator for GPU ids, or a number of CPU processes such as "
                         f"{len(devices)}")
    if name == "gpu" and not n_gpus:
        raise MmtokError("a GPU was requested (accelerator gpu) but there is no CUDA GPU",
                         hint=_no_gpu_hint("accelerator cpu, or auto"))
    if strategy == "fsdp" and name != "gpu":
        raise MmtokError("strategy fsdp needs CUDA GPUs: Lightning does not support FSDP on the CPU",
                         hint="use strategy ddp (or auto) on the CPU" + ("" if n_gpus else "; " + _no_gpu_hint("ddp")))
    if name == "cpu":
        return "cpu", 1 if devices == "auto" else devices
    if devices == "auto":
        return "gpu", n_gpus
    if isinstance(devices, int) and devices > n_gpus:
        raise MmtokError(f"{devices} GPUs were requested but this machine has {n_gpus}",
                         hint=f"ask for at most {n_gpus} (or 'auto': all of them)")
    if isinstance(devices, list):
        missing = [i for i in devices if i >= n_gpus]
        if missing:
            raise MmtokError(f"GPU id(s) {missing} requested but this machine has {n_gpus} GPU(s) "
                             f"(ids 0..{n_gpus - 1})", hint="pick ids that exist (see `mmtok doctor`)")
    return "gpu", devices


def _check_devices(devices: Devices) -> Union[int, str, list[int]]:
    if isinstance(devices, str):
        text = devices.strip().lower()
        if text == "auto":
            return "auto"
        if text.isdigit():
            devices = int(text)
        elif "," in text and all(p.strip().isdigit() for p in text.split(",") if p.strip()):
            devices = [int(p) for p in text.split(",") if p.strip()]
    if isinstance(devices, tuple):
        devices = list(devices)
    if isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1:
        return devices
    if (isinstance(devices, list) and devices and len(set(devices)) == len(devices)
            and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in devices)):
        return devices
    raise MmtokError(f"bad devices {devices!r}",
                     hint="give a number of devices >= 1, 'auto', or a list of distinct GPU ids such as [0, 1]")


def torch_device(device: str) -> str:
    """A single-process device name (`mmtok encode` / `decode`, `mmtok.load`) as a torch device string.

    Accepts "auto", "cpu", "gpu", "gpu:N", and "cuda" / "cuda:N" as the same as "gpu" / "gpu:N". Returns "cpu" or
    "cuda:N" ("gpu" and "auto" with CUDA are GPU 0). Raises MmtokError, like `resolve`, for an unknown name, a GPU
    without CUDA, or an id this machine does not have.
    """
    text = str(device).strip().lower()
    name, sep, index = text.partition(":")
    name = ALIASES.get(name, name)
    if name not in ACCELERATORS or (sep and (name != "gpu" or not index.isdigit())):
        raise MmtokError(f"unknown device {device!r}", hint="use auto, cpu, gpu or gpu:N (cuda and cuda:N also work)")
    accelerator, ids = resolve(name, [int(index)] if sep else ("auto" if name == "auto" else 1))
    if accelerator == "cpu":
        return "cpu"
    return f"cuda:{ids[0] if isinstance(ids, list) else 0}"
