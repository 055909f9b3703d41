"""The interop engine's shared pieces: weight-norm merging, and what stays stable for models saved before the
presets were made exact (their stored sections are not re-expanded)."""
from __future__ import annotations

import pytest
import torch
from torch import nn


@pytest.mark.parametrize("make", [
    lambda: nn.utils.weight_norm(nn.Conv1d(3, 5, 4)),  # dim 0, g [5, 1, 1]
    lambda: nn.utils.weight_norm(nn.Conv1d(3, 1, 4)),  # dim 0 of size 1
    lambda: nn.utils.weight_norm(nn.ConvTranspose1d(3, 1, 4), dim=1),  # the kept dimension has size 1
    lambda: nn.utils.weight_norm(nn.ConvTranspose1d(3, 6, 4), dim=1),  # g [1, 6, 1]
    lambda: nn.utils.weight_norm(nn.Conv1d(3, 5, 4), dim=None),  # g one number
])
def test_merge_weight_norm_recovers_the_weight(make):
    from mmtok.export.release_files import merge_weight_norm

    torch.manual_seed(0)
    module = make()
    with torch.no_grad():
        module.weight_v.mul_(torch.rand(()) + 0.5)  # v's length is irrelevant: only its direction counts
    state = {f"m.{k}": v for k, v in module.state_dict().items()}
    merged = merge_weight_norm(state)
    module(torch.randn(1, 3, 8))  # recompute .weight from g and v
    assert torch.allclose(merged["m.weight"], module.weight, atol=1e-6)


@pytest.mark.parametrize("preset,new_fields", [
    ("encodec_24k", ["padding", "causal", "conv_shortcut", "final_tanh", "upsampling"]),
    ("dac_44k", ["latent_kernel_size", "decoder_ch", "upsampling", "quantizer.code_output"]),
    ("taming_f16_1024", ["quantizer.projection"]),
])
def test_a_stored_section_from_before_the_exact_presets_keeps_its_architecture(preset, new_fields):
    """A checkpoint, bundle or run written before these fields existed lacks them; reading it must not take the
    preset's new values (the weights would not fit), only the schema defaults it was trained with."""
    from mmtok import config

    stored = config.load({"model": {"preset": preset}}).model_dump(mode="json")
    for field in new_fields:
        section, _, key = field.rpartition(".")
        (stored["model"][section] if section else stored["model"]).pop(key)
    old = config.load_stored(stored).model
    fresh = type(old).model_validate({"family": old.family})
    for field in new_fields:
        section, _, key = field.rpartition(".")
        mine = getattr(old.quantizer if section else old, key)
        default = getattr(fresh.quantizer if section else fresh, key)
        assert mine == default, field
    assert old.preset == preset  # kept as a label
    assert config.load({"model": {"preset": preset}}).model != old  # the preset itself did change
