"""`mmtok import encodec`, checked against transformers' EncodecModel at tiny random configurations (causal or not,
with or without the conv shortcut). EnCodec's own layout (facebookresearch/encodec: encoder.model.{i}.conv.conv with
weight_g / weight_v, decoder transposed convs under convtr.convtr, quantizer.vq.layers.{i}._codebook) is synthesised
from it by renaming rules written here from EnCodec's public code (encodec/modules/seanet.py, conv.py,
quantization/core_vq.py), independently of mmtok's rules."""
from __future__ import annotations

import re

import pytest
import torch

transformers = pytest.importorskip("transformers")

HOP = 6


def _encodec(causal: bool, shortcut: bool, seed: int = 0):
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(seed)
    cfg = EncodecConfig(sampling_rate=8000, audio_channels=1, num_filters=4, num_residual_layers=1,
                        upsampling_ratios=[3, 2], hidden_size=8, codebook_size=16, num_lstm_layers=1,
                        target_bandwidths=[41.0], use_causal_conv=causal, use_conv_shortcut=shortcut, normalize=False)
    model = EncodecModel(cfg).eval()
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        # codes drawn from the residuals they quantize (as k-means init does), so that ids vary
        residual = model.encoder(_audio(8, 20, seed=seed + 100)).transpose(1, 2).reshape(-1, 8)
        gen = torch.Generator().manual_seed(seed)
        for layer in model.quantizer.layers:
            cb = layer.codebook
            cb.embed.copy_(_distinct(residual[torch.randperm(len(residual), generator=gen)], 16))
            cb.embed_avg.copy_(cb.embed * 2)
            cb.cluster_size.copy_(torch.full_like(cb.cluster_size, 2.0))
            residual = residual - cb.embed[torch.cdist(residual, cb.embed).argmin(1)]
    return model


def _distinct(rows: torch.Tensor, k: int) -> torch.Tensor:
    """The first k of `rows` that are not near-duplicates of an earlier pick: causally padded first frames give
    near-identical latents, and two near-identical codes make an id a coin toss of float rounding."""
    picked = []
    for row in rows:
        if all(float((row - p).norm()) > 1e-3 * (1 + float(p.norm())) for p in picked):
            picked.append(row)
        if len(picked) == k:
            break
    gen = torch.Generator().manual_seed(len(picked))
    while len(picked) < k:  # deep levels: the residuals of the picked rows are ~0, few distinct ones are left
        picked.append(torch.randn(rows.shape[1], generator=gen) * (float(rows.std()) + 1e-3))
    return torch.stack(picked)


def _audio(n: int = 3, frames: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, frames * HOP, generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8


@torch.no_grad()
def _reference(hf, x):
    enc = hf.encode(x)
    codes = enc.audio_codes[0]  # [B, n_q, F] (one chunk)
    return codes.transpose(1, 2), hf.decode(enc.audio_codes, enc.audio_scales).audio_values


def _compare(bundle, ids_ref, audio_ref, x):
    import mmtok

    tok = mmtok.load(bundle).model
    with torch.no_grad():
        ids = tok.encode(x)
        audio = tok.decode(ids_ref)
        one_by_one = torch.cat([tok.encode(x[i:i + 1]) for i in range(len(x))])
    assert torch.equal(ids, ids_ref)
    assert torch.equal(one_by_one, ids)
    assert audio.shape == audio_ref.shape
    assert (audio - audio_ref).abs().max() <= 1e-5 * max(1.0, float(audio_ref.abs().max()))


def _original_name(key: str) -> str:
    """transformers' EncodecModel names -> EnCodec's own."""
    key = re.sub(r"^(encoder|decoder)\.layers\.", r"\1.model.", key)
    key = re.sub(r"\.conv\.parametrizations\.weight\.original0$", ".conv.conv.weight_g", key)
    key = re.sub(r"\.conv\.parametrizations\.weight\.original1$", ".conv.conv.weight_v", key)
    key = re.sub(r"\.conv\.bias$", ".conv.conv.bias", key)
    key = re.sub(r"^quantizer\.layers\.(\d+)\.codebook\.", r"quantizer.vq.layers.\1._codebook.", key)
    return key


def _to_original(hf) -> dict:
    state = {_original_name(k): v.clone() for k, v in hf.state_dict().items()}
    for k in [k for k in state if k.startswith("decoder.model.") and ".conv.conv." in k]:  # transposed convs
        m = re.match(r"^decoder\.model\.(\d+)\.conv\.conv\.(.*)$", k)
        if m and isinstance(hf.decoder.layers[int(m[1])], type(hf.decoder.layers[3])) and \
                type(hf.decoder.layers[int(m[1])]).__name__ == "EncodecConvTranspose1d":
            state[f"decoder.model.{m[1]}.convtr.convtr.{m[2]}"] = state.pop(k)
    return state


@pytest.mark.parametrize("causal,shortcut", [(True, True), (False, False)])
def test_transformers_encodec_folder_matches_its_own_encode_and_decode(tmp_path, causal, shortcut):
    from mmtok.export.interop import import_bundle

    hf = _encodec(causal, shortcut)
    hf.save_pretrained(tmp_path / "encodec")
    report = import_bundle("encodec", tmp_path / "encodec", tmp_path / "bundle")
    m = report["source"].model
    assert m["causal"] is causal and m["conv_shortcut"] is shortcut
    assert m["quantizer"]["levels"] == hf.quantizer.num_quantizers
    x = _audio()
    _compare(tmp_path / "bundle", *_reference(hf, x), x)


def test_encodec_original_file_matches_the_reference(tmp_path):
    from mmtok.export.interop import import_bundle

    hf = _encodec(True, True, seed=4)
    state = _to_original(hf)
    assert any(".convtr.convtr.weight_g" in k for k in state) and "encoder.model.0.conv.conv.weight_v" in state
    torch.save(state, tmp_path / "encodec_24khz-tiny.th")
    report = import_bundle("encodec", tmp_path / "encodec_24khz-tiny.th", tmp_path / "bundle")
    assert "inferred" in report["source"].config_from
    x = _audio(seed=6)
    # the original layout says nothing about the sample rate: the import assumes 24 kHz, which changes no number
    _compare(tmp_path / "bundle", *_reference(hf, x), x)


def test_a_broken_encodec_rule_fails_the_parity_check(tmp_path, monkeypatch):
    """Map the EMA codebook to embed_avg instead of embed: the shapes fit, the ids do not."""
    from mmtok.export.interop import import_bundle
    from mmtok.families.codec import interop

    monkeypatch.setattr(interop, "EMA_BUFFERS",
                        {"codebook": "embed_avg", "ema_sum": "embed", "ema_count": "cluster_size"})
    hf = _encodec(True, True)
    hf.save_pretrained(tmp_path / "encodec")
    import_bundle("encodec", tmp_path / "encodec", tmp_path / "bundle")
    x = _audio()
    with pytest.raises(AssertionError):
        _compare(tmp_path / "bundle", *_reference(hf, x), x)


def test_encodec_round_trip_through_mmtok_and_back_to_transformers(tmp_path):
    from transformers import EncodecModel

    from mmtok.export.interop import export_hf, import_bundle

    hf = _encodec(True, True, seed=2)
    hf.save_pretrained(tmp_path / "encodec")
    import_bundle("encodec", tmp_path / "encodec", tmp_path / "bundle")
    report = export_hf(tmp_path / "bundle", tmp_path / "hf")
    assert report["class"] == "EncodecModel" and report["check"]["ids_equal"] == 1.0
    back = EncodecModel.from_pretrained(tmp_path / "hf").eval()
    x = _audio(seed=3)
    ids_ref, audio_ref = _reference(hf, x)
    ids, audio = _reference(back, x)
    assert torch.equal(ids, ids_ref)
    assert (audio - audio_ref).abs().max() <= 1e-5 * max(1.0, float(audio_ref.abs().max()))
