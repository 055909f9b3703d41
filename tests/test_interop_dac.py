"""`mmtok import dac` and `mmtok export --format hf` for DAC codecs, checked against transformers' DacModel.

The reference is transformers' DacModel at a tiny random configuration. DAC's own file layout (descript-audio-codec:
dac/model/dac.py, dac/nn/quantize.py; nn.Sequential indices, weight_g / weight_v pairs, metadata.kwargs) is
synthesised from it by renaming rules written here from DAC's public code, independently of mmtok's rules.
"""
from __future__ import annotations

import re

import pytest
import torch

transformers = pytest.importorskip("transformers")

STRIDES = [2, 3]
HOP = 6


def _dac(seed: int = 0):
    from transformers import DacConfig, DacModel

    torch.manual_seed(seed)
    model = DacModel(DacConfig(encoder_hidden_size=4, downsampling_ratios=STRIDES, decoder_hidden_size=16,
                               n_codebooks=3, codebook_size=16, codebook_dim=4, sampling_rate=8000)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.rand_like(p) + 0.5 if name.endswith("alpha") else torch.randn_like(p) * 0.12)
        # codes drawn from the projected residuals they quantize, so that ids vary
        residual = model.encoder(_audio(8, 20, seed=seed + 100))
        gen = torch.Generator().manual_seed(seed)
        for q in model.quantizer.quantizers:
            proj = q.in_proj(residual).transpose(1, 2).reshape(-1, q.codebook_dim)
            q.codebook.weight.copy_(proj[torch.randperm(len(proj), generator=gen)[:16]] * 1.5)
            quantized, _, _, _, _ = q(residual)
            residual = residual - quantized
    return model


def _audio(n: int = 4, frames: int = 10, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, frames * HOP, generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8


UNIT = {"snake1": "block.0", "conv1": "block.1", "snake2": "block.2", "conv2": "block.3"}  # ResidualUnit.block


def _original_name(key: str) -> str:
    """transformers' DacModel names -> DAC's own (Encoder.block / Decoder.model Sequentials, 3 units per block)."""
    n = len(STRIDES)
    subs = [(r"^encoder\.conv1\.", "encoder.block.0."),
            (r"^encoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.",
             lambda m: f"encoder.block.{int(m[1]) + 1}.block.{int(m[2]) - 1}.{UNIT[m[3]]}."),
            (r"^encoder\.block\.(\d+)\.snake1\.", lambda m: f"encoder.block.{int(m[1]) + 1}.block.3."),
            (r"^encoder\.block\.(\d+)\.conv1\.", lambda m: f"encoder.block.{int(m[1]) + 1}.block.4."),
            (r"^encoder\.snake1\.", f"encoder.block.{n + 1}."), (r"^encoder\.conv2\.", f"encoder.block.{n + 2}."),
            (r"^decoder\.conv1\.", "decoder.model.0."),
            (r"^decoder\.block\.(\d+)\.snake1\.", lambda m: f"decoder.model.{int(m[1]) + 1}.block.0."),
            (r"^decoder\.block\.(\d+)\.conv_t1\.", lambda m: f"decoder.model.{int(m[1]) + 1}.block.1."),
            (r"^decoder\.block\.(\d+)\.res_unit(\d)\.(\w+)\.",
             lambda m: f"decoder.model.{int(m[1]) + 1}.block.{int(m[2]) + 1}.{UNIT[m[3]]}."),
            (r"^decoder\.snake1\.", f"decoder.model.{n + 1}."), (r"^decoder\.conv2\.", f"decoder.model.{n + 2}.")]
    for pattern, repl in subs:
        key, hits = re.subn(pattern, repl, key)
        if hits:
            break
    return key


def _original_file(tmp_path, hf):
    """DAC's own .pth: weight_g / weight_v pairs (v scaled at random: only the direction counts), metadata.kwargs."""
    state = {}
    gen = torch.Generator().manual_seed(9)
    for k, v in hf.state_dict().items():
        name = _original_name(k)
        if k.endswith(".weight") and v.dim() == 3 and "codebook" not in k:
            stem = name[: -len(".weight")]
            norm = v.norm(dim=(1, 2), keepdim=True)
            state[stem + ".weight_g"] = norm
            state[stem + ".weight_v"] = v * (torch.rand((), generator=gen) + 0.5)
        else:
            state[name] = v.clone()
    kwargs = dict(encoder_dim=4, encoder_rates=STRIDES, latent_dim=None, decoder_dim=16, decoder_rates=STRIDES[::-1],
                  n_codebooks=3, codebook_size=16, codebook_dim=4, quantizer_dropout=False, sample_rate=8000)
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": state, "metadata": {"kwargs": kwargs}}, path)
    return path


@torch.no_grad()
def _reference(hf, x):
    ids = hf.encode(x).audio_codes  # [B, n_q, F]
    return ids.transpose(1, 2), hf.decode(audio_codes=ids).audio_values


def _compare(bundle, ids_ref, audio_ref, x):
    import mmtok

    tok = mmtok.load(bundle).model
    with torch.no_grad():
        ids = tok.encode(x)
        audio = tok.decode(ids_ref)[:, 0]
        one_by_one = torch.cat([tok.encode(x[i:i + 1]) for i in range(len(x))])
    assert torch.equal(ids, ids_ref)
    assert torch.equal(one_by_one, ids)
    _same_audio(audio, audio_ref)


def _same_audio(audio, audio_ref):
    """DAC's decoder ends one sample short per odd stride; mmtok zero-pads those samples (upsampling: dac)."""
    n = audio_ref.shape[-1]
    assert (audio[..., :n] - audio_ref).abs().max() <= 1e-5
    assert not audio[..., n:].any() and audio.shape[-1] - n == sum(s % 2 for s in STRIDES) * HOP // max(STRIDES)


def test_transformers_dac_folder_round_trip(tmp_path):
    from transformers import DacModel

    from mmtok.export.interop import export_hf, import_bundle

    hf = _dac()
    hf.save_pretrained(tmp_path / "dac")
    report = import_bundle("dac", tmp_path / "dac", tmp_path / "bundle")
    assert report["source"].model["decoder_ch"] == 16 and report["source"].model["quantizer"]["code_output"] == "raw"
    x = _audio()
    ids_ref, audio_ref = _reference(hf, x)
    _compare(tmp_path / "bundle", ids_ref, audio_ref, x)
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    out = export_hf(tmp_path / "bundle", tmp_path / "hf")
    assert out["class"] == "DacModel" and out["check"]["ids_equal"] == 1.0
    assert not hf_logging.is_progress_bar_enabled()  # stderr is not a terminal here: no "Writing model shards" bar
    back = DacModel.from_pretrained(tmp_path / "hf").eval()
    ids, audio = _reference(back, x)
    assert torch.equal(ids, ids_ref) and (audio - audio_ref).abs().max() <= 1e-5  # transformers against itself


def test_dac_original_file_matches_the_reference(tmp_path):
    from mmtok.export.interop import import_bundle

    hf = _dac(seed=3)
    path = _original_file(tmp_path, hf)
    report = import_bundle("dac", path, tmp_path / "bundle")
    assert "metadata.kwargs" in report["source"].config_from
    x = _audio(seed=5)
    _compare(tmp_path / "bundle", *_reference(hf, x), x)


def test_a_broken_dac_rule_fails_the_parity_check(tmp_path, monkeypatch):
    """Swap the two snakes of every residual unit: the shapes still fit, the outputs do not."""
    from mmtok.export.interop import import_bundle
    from mmtok.families.codec import interop

    layout = dict(interop.TRANSFORMERS, unit=("snake2", "conv1", "snake1", "conv2"))
    monkeypatch.setattr(interop, "TRANSFORMERS", layout)
    hf = _dac()
    hf.save_pretrained(tmp_path / "dac")
    import_bundle("dac", tmp_path / "dac", tmp_path / "bundle")
    x = _audio()
    with pytest.raises(AssertionError):
        _compare(tmp_path / "bundle", *_reference(hf, x), x)


def test_export_hf_refuses_a_codec_dac_cannot_express(tmp_path):
    from mmtok import config
    from mmtok.errors import MmtokError
    from mmtok.export.bundle import write_bundle
    from mmtok.export.interop import export_hf
    from mmtok.families import build_model

    recipe = config.load("audio_quickstart", ["model.preset=test_codec"])
    model = build_model(recipe.model).eval()
    write_bundle(model, recipe, {"weights": "raw", "step": 0}, tmp_path / "bundle")
    with pytest.raises(MmtokError, match="DacModel needs DAC's architecture") as e:
        export_hf(tmp_path / "bundle", tmp_path / "hf")
    assert "dac_44k" in e.value.hint and not (tmp_path / "hf").exists()
