"""mmtok.hardware.resolve / torch_device: one device vocabulary for every command, and a request this machine
cannot satisfy is one MmtokError line (with a hint), checked with a faked CUDA count."""
import pytest
import torch

from mmtok import hardware
from mmtok.errors import MmtokError


@pytest.fixture
def gpus(monkeypatch):
    """Call with n: this process then sees n CUDA devices (0: no CUDA)."""

    def set_count(n: int):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return set_count


@pytest.mark.parametrize("n, request_, want", [
    (0, ("auto", "auto"), ("cpu", 1)),
    (0, ("cpu", 3), ("cpu", 3)),
    (0, ("auto", 2, "ddp"), ("cpu", 2)),
    (2, ("auto", "auto"), ("gpu", 2)),
    (2, ("gpu", 1), ("gpu", 1)),
    (2, ("cuda", [1]), ("gpu", [1])),
    (2, ("GPU", "0,1"), ("gpu", [0, 1])),
    (4, ("gpu", (3, 0), "fsdp"), ("gpu", [3, 0])),
    (2, ("cpu", "auto"), ("cpu", 1)),
    (2, ("cpu", "2"), ("cpu", 2)),
])
def test_resolve_returns_concrete_accelerator_and_devices(gpus, n, request_, want):
    gpus(n)
    assert hardware.resolve(*request_) == want


@pytest.mark.parametrize("n, request_, says", [
    (0, ("gpu", 1), "a GPU was requested (accelerator gpu) but there is no CUDA GPU"),
    (0, ("cuda", "auto"), "there is no CUDA GPU"),
    (0, ("auto", [0]), "GPU ids [0] were given but there is no CUDA GPU"),
    (2, ("cpu", [0]), "GPU ids [0] were given with the cpu accelerator"),
    (0, ("auto", 1, "fsdp"), "strategy fsdp needs CUDA GPUs"),
    (2, ("cpu", 1, "fsdp"), "strategy fsdp needs CUDA GPUs"),
    (2, ("gpu", 3), "3 GPUs were requested but this machine has 2"),
    (2, ("gpu", [0, 2]), "GPU id(s) [2] requested but this machine has 2 GPU(s) (ids 0..1)"),
    (2, ("tpu", 1), "unknown accelerator 'tpu'"),
    (2, ("gpu", 1, "deepspeed"), "unknown strategy 'deepspeed'"),
    (2, ("gpu", 0), "bad devices 0"),
    (2, ("gpu", [1, 1]), "bad devices [1, 1]"),
    (2, ("gpu", []), "bad devices []"),
    (2, ("gpu", True), "bad devices True"),
])
def test_resolve_refuses_in_one_line_with_a_hint(gpus, n, request_, says):
    gpus(n)
    with pytest.raises(MmtokError) as e:
        hardware.resolve(*request_)
    assert says in e.value.message and "\n" not in str(e.value) and e.value.hint, str(e.value)


@pytest.mark.parametrize("n, name, want", [
    (0, "cpu", "cpu"), (0, "auto", "cpu"), (1, "auto", "cuda:0"), (1, "gpu", "cuda:0"), (1, "cuda", "cuda:0"),
    (2, "cuda:1", "cuda:1"), (2, "gpu:1", "cuda:1"), (2, "CPU", "cpu"),
])
def test_torch_device_names(gpus, n, name, want):
    gpus(n)
    assert hardware.torch_device(name) == want


@pytest.mark.parametrize("n, name, says", [
    (0, "gpu", "no CUDA GPU"), (0, "cuda:0", "no CUDA GPU"), (1, "cuda:1", "GPU id(s) [1]"),
    (1, "mps", "unknown device 'mps'"), (1, "cpu:1", "unknown device"), (1, "gpu:x", "unknown device"),
])
def test_torch_device_refuses_in_one_line(gpus, n, name, says):
    gpus(n)
    with pytest.raises(MmtokError, match=None) as e:
        hardware.torch_device(name)
    assert says in e.value.message and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("n, says", [(0, "cpu, 1 process"), (2, "gpu, all 2 visible GPU(s)")])
def test_doctor_says_what_auto_means_here(gpus, n, says):
    from mmtok.cli.doctor import _auto_devices

    gpus(n)
    assert _auto_devices().startswith(says)
