"""Metrics against reference implementations: FID (scipy sqrtm formula), PSNR/SSIM (skimage), codebook
usage (numpy), the real FID Inception asset, and the LPIPS weight-loading and "unavailable" paths."""
from __future__ import annotations


import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from mmtok import assets
from mmtok.errors import AssetError
from mmtok.metrics import (
    PSNR,
    SSIM,
    CodebookUsage,
    FrechetInceptionDistance,
    LPIPSMetric,
    count_codes,
    feature_stats,
    frechet_distance,
    load_inception,
    load_lpips,
    lpips_available,
    psnr,
    ssim,
)


def tiny_extractor(seed: int = 0, features: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, features, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    ).double()


def images(n: int, seed: int, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g, dtype=torch.float64) * 2 - 1


# --------------------------------------------------------------------------------------------------- FID


def pytorch_fid_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance (scipy.linalg.sqrtm), verbatim in substance."""
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


@pytest.mark.filterwarnings("ignore:The `disp` argument")
@pytest.mark.parametrize("seed,dim", [(0, 8), (1, 32), (2, 64)])
def test_frechet_distance_matches_scipy(seed, dim):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(4 * dim, dim))
    b = rng.normal(size=(4 * dim, dim)) @ rng.normal(size=(dim, dim)) * 0.5 + rng.normal(size=dim)
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    expected = pytorch_fid_distance(mu1, s1, mu2, s2)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert got.dtype == torch.float64 and got.ndim == 0
    assert abs(got.item() - expected) <= 1e-6 * abs(expected)
    # symmetric in its two arguments, and tensors work as well as arrays
    swapped = frechet_distance(torch.from_numpy(mu2), torch.from_numpy(s2), torch.from_numpy(mu1), torch.from_numpy(s1))
    assert abs(swapped.item() - expected) <= 1e-6 * abs(expected)


def test_frechet_distance_rank_deficient_self_is_zero():
    # fewer samples than features: the covariance is singular (as with 2048-d Inception on a small set)
    feats = torch.rand(20, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 5
    mu, sigma = feature_stats(feats)
    assert abs(frechet_distance(mu, sigma, mu, sigma).item()) < 1e-9


def test_fid_metric_equals_functional_on_features():
    net = tiny_extractor()
    fid = FrechetInceptionDistance(net)
    assert fid.num_features == 8  # inferred by a dry run
    real, fake = images(30, 1), images(25, 2) * 0.7
    for chunk in real.split(7):
        fid.update(chunk, real=True)
    for chunk in fake.split(9):
        fid.update(chunk, real=False)
    with torch.no_grad():
        fr, ff = net(real).numpy(), net(fake).numpy()
    expected = pytorch_fid_distance(fr.mean(0), np.cov(fr, rowvar=False), ff.mean(0), np.cov(ff, rowvar=False))
    got = fid.compute().item()
    assert got > 1e-3
    assert abs(got - expected) <= 1e-6 * expected


def test_fid_of_a_set_against_itself_is_zero():
    fid = FrechetInceptionDistance(tiny_extractor(), num_features=8)
    x = images(12, 3)
    fid.update(x, real=True)
    fid.update(x, real=False)
    assert abs(fid.compute().item()) < 1e-6


def test_fid_needs_two_images_per_side():
    fid = FrechetInceptionDistance(tiny_extractor(), num_features=8)
    fid.update(images(1, 0), real=True)
    fid.update(images(3, 1), real=False)
    with pytest.raises(ValueError, match="at least 2"):
        fid.compute()


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_reference_stats_round_trip(tmp_path, suffix):
    real, fake = images(20, 4), images(20, 5) * 0.5
    fid = FrechetInceptionDistance(tiny_extractor(), num_features=8)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    expected = fid.compute()
    path = tmp_path / f"ref{suffix}"
    fid.save_reference_stats(path)
    mu, sigma, n = fid.real_stats()

    again = FrechetInceptionDistance(tiny_extractor(), num_features=8)
    again.load_reference_stats(path)
    ref_mu, ref_sigma, ref_n = again.real_stats()
    assert ref_n == n == 20 and ref_mu.dtype == ref_sigma.dtype == torch.float64
    assert torch.equal(ref_mu, mu) and torch.equal(ref_sigma, sigma)
    again.update(fake, real=False)
    assert again.compute().item() == pytest.approx(expected.item(), rel=1e-12)
    # the reference stands for the real side: adding real images as well is a mistake
    again.update(real, real=True)
    with pytest.raises(ValueError, match="reference"):
        again.compute()


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_reference_stats_keep_their_metadata(tmp_path, suffix):
    from mmtok.metrics import load_stats, load_stats_meta, save_stats

    meta = {"source": {"data": "photos/", "path": "/abs/photos"}, "num_images": 3, "resolution": 16, "crop": "c"}
    path = tmp_path / f"ref{suffix}"
    save_stats(path, torch.ones(4), torch.eye(4), 3, meta)
    assert load_stats_meta(path) == meta
    mu, sigma, n = load_stats(path)  # the statistics read as before
    assert n == 3 and torch.equal(mu, torch.ones(4, dtype=torch.float64)) and torch.equal(sigma, torch.eye(4).double())
    save_stats(path, torch.ones(4), torch.eye(4), 3)  # no metadata (as pytorch-fid files): None
    assert load_stats_meta(path) is None
    with pytest.raises(AssetError, match="no file at"):
        load_stats_meta(tmp_path / f"none{suffix}")


def test_reference_stats_missing_or_mismatched(tmp_path):
    fid = FrechetInceptionDistance(tiny_extractor(), num_features=8)
    with pytest.raises(AssetError, match="nope.npz"):
        fid.load_reference_stats(tmp_path / "nope.npz")
    np.savez(tmp_path / "wide.npz", mu=np.zeros(4), sigma=np.eye(4))  # pytorch-fid layout, no count
    with pytest.raises(AssetError, match="4 features"):
        fid.load_reference_stats(tmp_path / "wide.npz")


def test_missing_inception_path_names_the_file(tmp_path):
    missing = tmp_path / "no_such_inception.pt"
    with pytest.raises(AssetError, match="no_such_inception.pt") as info:
        load_inception(missing)
    assert info.value.hint  # says how to provide it
    with pytest.raises(AssetError, match="no_such_inception.pt"):
        FrechetInceptionDistance(weights=missing)


def test_unreadable_inception_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torchscript")
    with pytest.raises(AssetError, match="cannot read"):
        load_inception(bad)


@pytest.mark.skipif(assets.get("fid-inception").find() is None, reason="FID Inception asset not installed")
def test_real_inception_features():
    net = load_inception()
    x = images(4, 6, size=64).float()
    feats = net(x)
    assert feats.shape == (4, 2048) and feats.dtype == torch.float64
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # pool3 follows a ReLU
    assert not torch.equal(feats[0], feats[1])
    net.train()
    assert not net.training and not net.net.training
    fid = FrechetInceptionDistance(net)  # 2048 from the attribute, no dry run
    assert fid.num_features == 2048 and fid.fake_outer.shape == (2048, 2048)


# --------------------------------------------------------------------------------------------- PSNR / SSIM


def smooth_images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size, dtype=torch.float64),
                            torch.linspace(0, 1, size, dtype=torch.float64), indexing="ij")
    freq = torch.rand(n, 3, 2, generator=g, dtype=torch.float64) * 6 + 1
    phase = torch.rand(n, 3, 1, 1, generator=g, dtype=torch.float64) * 6
    x = 0.5 + 0.4 * torch.sin(freq[..., 0, None, None] * xx + freq[..., 1, None, None] * yy + phase)
    return x.clamp(0, 1)


def pairs():
    g = torch.Generator().manual_seed(7)
    rnd_t = torch.rand(3, 3, 32, 40, generator=g, dtype=torch.float64)
    rnd_p = (rnd_t + 0.1 * torch.randn(rnd_t.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    smooth_t = smooth_images(3, 8)
    smooth_p = (smooth_t + 0.05 * torch.randn(smooth_t.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return {"random": (rnd_p, rnd_t), "smooth": (smooth_p, smooth_t)}


@pytest.mark.parametrize("kind", ["random", "smooth"])
def test_psnr_ssim_match_skimage(kind):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    preds, target = pairs()[kind]
    p_np, t_np = preds.numpy(), target.numpy()
    ref_psnr = [peak_signal_noise_ratio(t_np[i], p_np[i], data_range=1.0) for i in range(len(p_np))]
    ref_ssim = [
        structural_similarity(t_np[i], p_np[i], channel_axis=0, data_range=1.0, gaussian_weights=True,
                              sigma=1.5, use_sample_covariance=False)
        for i in range(len(p_np))
    ]
    np.testing.assert_allclose(psnr(preds, target).numpy(), ref_psnr, rtol=0, atol=1e-4)
    np.testing.assert_allclose(ssim(preds, target).numpy(), ref_ssim, rtol=0, atol=1e-4)

    m_psnr, m_ssim = PSNR(), SSIM()
    for a, b in ((preds[:1], target[:1]), (preds[1:], target[1:])):  # uneven batches: mean over images
        m_psnr.update(a, b)
        m_ssim.update(a.float(), b.float())  # float32 input too
    assert m_psnr.compute().item() == pytest.approx(np.mean(ref_psnr), abs=1e-4)
    assert m_ssim.compute().item() == pytest.approx(np.mean(ref_ssim), abs=1e-4)


def test_psnr_is_mean_of_per_image_values():
    t = torch.zeros(2, 1, 12, 12, dtype=torch.float64)
    p = t.clone()
    p[0] += 0.1  # MSE 1e-2 -> 20 dB
    p[1] += 0.01  # MSE 1e-4 -> 40 dB
    assert psnr(p, t).tolist() == pytest.approx([20.0, 40.0])
    m = PSNR()
    m.update(p, t)
    assert m.compute().item() == pytest.approx(30.0)  # not 10 log10(1 / mean MSE) = 23.0


def test_image_metrics_reject_bad_shapes():
    with pytest.raises(ValueError, match="equal shape"):
        psnr(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 15))
    with pytest.raises(ValueError, match="11 x 11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


# --------------------------------------------------------------------------------------------- codebook


def numpy_usage(ids: np.ndarray, k: int) -> dict:
    counts = np.bincount(ids.ravel(), minlength=k)
    p = counts / counts.sum()
    nz = p[p > 0]
    h = -(nz * np.log2(nz)).sum()
    return dict(counts=counts, usage_pct=100 * (counts > 0).sum() / k, entropy_bits=h,
                perplexity=np.exp(-(nz * np.log(nz)).sum()),
                used_codes=(counts > 0).sum(), total_tokens=counts.sum())


def test_codebook_usage_matches_numpy():
    k = 64
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 40, size=(4, 5, 6)), rng.zipf(1.5, size=(3, 5, 6)) % 48]  # codes >= 48 never used
    metric = CodebookUsage(k)
    for b in batches:
        metric.update(torch.from_numpy(b))
    out = metric.compute()
    ref = numpy_usage(np.concatenate([b.ravel() for b in batches]), k)
    assert np.array_equal(metric.counts[0].numpy(), ref["counts"])
    assert out["used_codes"].item() == ref["used_codes"] and out["total_tokens"].item() == ref["total_tokens"] == 210
    assert out["usage_pct"].item() == pytest.approx(ref["usage_pct"], abs=1e-12)
    assert out["entropy_bits"].item() == pytest.approx(ref["entropy_bits"], abs=1e-12)
    assert out["perplexity"].item() == pytest.approx(ref["perplexity"], rel=1e-12)
    assert out["num_samples"].item() == 7 and out["tokens_per_sample"].item() == 30.0
    assert torch.equal(metric.histogram(), metric.counts)


def test_codebook_usage_extremes_and_several_codebooks():
    m = CodebookUsage(8)
    m.update(torch.full((2, 4), 3))
    out = m.compute()
    assert out["usage_pct"].item() == 12.5 and out["perplexity"].item() == 1.0 and out["entropy_bits"].item() == 0.0
    m = CodebookUsage(8)
    m.update(torch.arange(8).repeat(3, 1))
    assert m.compute()["perplexity"].item() == pytest.approx(8.0) and m.compute()["usage_pct"].item() == 100.0

    rng = np.random.default_rng(1)
    ids = np.stack([rng.integers(0, 16, size=(5, 7)), rng.integers(0, 4, size=(5, 7))], axis=1)  # [B, G=2, T]
    m = CodebookUsage(16, num_codebooks=2)
    m.update(torch.from_numpy(ids))
    out = m.compute()
    refs = [numpy_usage(ids[:, g], 16) for g in range(2)]
    assert np.array_equal(m.counts.numpy(), np.stack([r["counts"] for r in refs]))
    assert out["usage_pct"].item() == pytest.approx(np.mean([r["usage_pct"] for r in refs]))
    assert out["perplexity"].item() == pytest.approx(np.mean([r["perplexity"] for r in refs]))
    assert out["used_codes"].item() == sum(r["used_codes"] for r in refs)
    assert out["tokens_per_sample"].item() == 14.0


def test_codebook_usage_rejects_bad_ids():
    m = CodebookUsage(10)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        m.update(torch.tensor([[0, 10]]))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        m.update(torch.tensor([[-1, 3]]))
    with pytest.raises(ValueError, match="integers"):
        m.update(torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="2 codebooks"):
        count_codes(torch.zeros(2, 3, 4, dtype=torch.long), 10, num_codebooks=2)
    assert int(m.counts.sum()) == 0  # nothing was counted by the failed updates


# ------------------------------------------------------------------------------------------------- LPIPS


def make_fake_backbone(folder, net: str) -> tuple[str, dict]:
    """A torchvision-shaped random state dict (features + a classifier key lpips ignores), saved to a file."""
    import torchvision

    torch.manual_seed(11)
    if net == "vgg":
        features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])  # vgg16's features
    else:
        features = torchvision.models.alexnet(weights=None).features
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    path = folder / f"{net}_backbone.pth"
    torch.save(state, path)
    return str(path), state


@pytest.fixture(scope="module")
def fake_alex(tmp_path_factory):
    return make_fake_backbone(tmp_path_factory.mktemp("lpips"), "alex")


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_loads_backbone_into_slices(tmp_path, net):
    import lpips

    path, state = make_fake_backbone(tmp_path, net)
    model = load_lpips(net, path)
    loaded = model.model.state_dict()
    slice_keys = [k for k in loaded if k.startswith("net.slice")]
    assert len(slice_keys) == sum(k.startswith("features.") for k in state)  # every conv weight and bias
    for key in slice_keys:
        layer, param = key.split(".")[-2:]
        assert torch.equal(loaded[key], state[f"features.{layer}.{param}"]), key
    # e.g. vgg16 features.28 (the last conv) lands in slice5
    last = "28" if net == "vgg" else "10"
    assert torch.equal(model.model.net.slice5._modules[last].weight, state[f"features.{last}.weight"])
    # the calibrated linear heads come from the package
    heads = torch.load(f"{lpips.__path__[0]}/weights/v0.1/{net}.pth", map_location="cpu", weights_only=True)
    assert torch.equal(loaded["lin0.model.1.weight"], heads["lin0.model.1.weight"])
    # frozen, eval (dropout off) even after train(), differentiable w.r.t. its inputs
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training and not any(m.training for m in model.modules())
    x = images(2, 0, size=32).float().requires_grad_(True)
    y = images(2, 1, size=32).float()
    d = model(x, y)
    assert d.shape == (2,) and (d > 0).all()
    d.sum().backward()
    assert x.grad is not None and torch.equal(model(x, y), d.detach())


def test_lpips_metric_with_fake_backbone(fake_alex):
    path, _ = fake_alex
    metric = LPIPSMetric("alex", path)
    a = (images(3, 2, size=32) + 1) / 2
    b = (images(3, 3, size=32) + 1) / 2
    metric.update(a, a)
    assert metric.compute().item() == 0.0
    metric.reset()
    metric.update(a[:1], b[:1])
    metric.update(a[1:], b[1:])
    expected = metric.lpips(a.float() * 2 - 1, b.float() * 2 - 1).double().mean()
    assert metric.compute().item() == pytest.approx(expected.item(), rel=1e-6)


def test_lpips_unavailable(tmp_path, monkeypatch, fake_alex):
    monkeypatch.setenv("MMTOK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ok, reason = lpips_available("vgg")
    assert not ok and "vgg16-397923af.pth" in reason and str(tmp_path / "home") in reason
    ok, reason = lpips_available("alex", tmp_path / "missing_alex.pth")
    assert not ok and "missing_alex.pth" in reason
    with pytest.raises(AssetError, match="vgg16-397923af.pth"):
        LPIPSMetric("vgg")
    with pytest.raises(AssetError, match="missing_alex.pth"):
        load_lpips("alex", tmp_path / "missing_alex.pth")
    # found through MMTOK_HOME once the file is there
    path, _ = fake_alex
    (tmp_path / "home" / "assets").mkdir(parents=True)
    (tmp_path / "home" / "assets" / "alexnet-owt-7be5be79.pth").write_bytes(open(path, "rb").read())
    ok, where = lpips_available("alex")
    assert ok and where.endswith("alexnet-owt-7be5be79.pth")


def test_lpips_rejects_wrong_backbone(tmp_path, fake_alex):
    alex_path, _ = fake_alex
    with pytest.raises(AssetError, match="not torchvision's vgg16"):
        load_lpips("vgg", alex_path)  # wrong network: missing layers / wrong shapes
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(AssetError, match="unreadable"):
        load_lpips("alex", junk)
    with pytest.raises(ValueError, match="vgg"):
        lpips_available("squeeze")
