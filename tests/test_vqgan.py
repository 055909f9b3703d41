import pytest
import torch

from mmtok import config, families
from mmtok.errors import MmtokError


@pytest.mark.parametrize("preset", [p for p in families.get("vqgan").presets if p.startswith("test_")])
def test_tiny_presets_encode_decode_and_backprop(preset):
    cfg = config.load({"model": {"preset": preset}}).model
    model = families.build_model(cfg)
    x = torch.rand(2, 3, cfg.resolution, cfg.resolution) * 2 - 1
    out = model(x)
    g = cfg.resolution // cfg.downsample
    assert out.recon.shape == x.shape and out.ids.shape == (2, g, g) and out.ids.dtype == torch.long
    loss = out.recon.pow(2).mean() + sum(out.losses.values())
    loss.backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    model.eval()
    ids = model.encode(x)
    assert torch.equal(ids, model(x).ids)
    assert torch.allclose(model.decode(ids), model(x).recon, atol=1e-5)
    assert model.meta["token_grid"] == [g, g] and model.meta["codebook_size"] == cfg.quantizer.codebook_size


def test_real_presets_have_the_published_shapes():
    vq16 = config.load({"model": {"preset": "llamagen_vq16"}}).model
    assert (vq16.downsample, vq16.quantizer.codebook_size, vq16.quantizer.dim, vq16.quantizer.l2_norm) == (16, 16384, 8, True)
    vq8 = config.load({"model": {"preset": "llamagen_vq8"}}).model
    assert vq8.downsample == 8
    taming = config.load({"model": {"preset": "taming_f16_1024"}}).model
    assert (taming.quantizer.codebook_size, taming.quantizer.dim, taming.quantizer.l2_norm) == (1024, 256, False)
    model = families.build_model(config.load({"model": {"preset": "llamagen_vq16"}}).model)
    n = sum(p.numel() for p in model.parameters())
    assert 60e6 < n < 80e6  # LlamaGen VQ-16 has ~72M parameters


def test_wrong_input_size_is_a_clear_error():
    cfg = config.load({"model": {"preset": "test_f4"}}).model
    model = families.build_model(cfg).eval()
    with pytest.raises(MmtokError, match="multiples of 4"):
        model.encode(torch.zeros(1, 3, 18, 18))
