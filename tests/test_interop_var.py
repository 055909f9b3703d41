"""`mmtok import var`: a VQ-VAE written here under the names and arithmetic of VAR's release (models/vqvae.py and
models/quant.py: taming's conv blocks with a fused qkv attention conv, 3x3 quant convs, one codebook, four phi convs
over ten scales, the ema_vocab_hit_SV buffer), with random weights, saved as a plain state dict; the imported bundle
must give the same ids and images, and a broken name rule must fail. Nothing is downloaded."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

SCALES = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


class Res(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(32, cin, eps=1e-6), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(32, cout, eps=1e-6), nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
        return self.nin_shortcut(x) + h


class Attn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm, self.qkv, self.proj_out = nn.GroupNorm(32, c, eps=1e-6), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)  # [B, C, N] each
        weights = torch.softmax(q.transpose(1, 2) @ k / c ** 0.5, dim=-1)  # [B, N(query), N(key)]
        return x + self.proj_out((v @ weights.transpose(1, 2)).reshape(b, c, h, w))


class Resample(nn.Module):
    def __init__(self, c, down):
        super().__init__()
        self.down, self.conv = down, nn.Conv2d(c, c, 3, stride=2 if down else 1, padding=0 if down else 1)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1))) if self.down else self.conv(F.interpolate(x, scale_factor=2.0))


def _level(blocks, attn, resample=None, name="downsample"):
    m = nn.Module()
    m.block, m.attn = nn.ModuleList(blocks), nn.ModuleList(attn)
    if resample is not None:
        setattr(m, name, resample)
    return m


def _mid(c):
    m = nn.Module()
    m.block_1, m.attn_1, m.block_2 = Res(c, c), Attn(c), Res(c, c)
    return m


class ReleaseVAE(nn.Module):
    """ch 32, ch_mult (1, 2): f2, 32 px images, a 16 x 16 grid; attention at the deepest level and in the middle."""

    def __init__(self, ch=32, mult=(1, 2), z=8, vocab=64):
        super().__init__()
        enc, dec = nn.Module(), nn.Module()
        enc.conv_in, widths = nn.Conv2d(3, ch, 3, padding=1), [ch * m for m in mult]
        enc.down, c = nn.ModuleList(), ch
        for i, w in enumerate(widths):
            last = i == len(widths) - 1
            enc.down.append(_level([Res(c, w)], [Attn(w)] if last else [], None if last else Resample(w, True)))
            c = w
        enc.mid, enc.norm_out, enc.conv_out = _mid(c), nn.GroupNorm(32, c, eps=1e-6), nn.Conv2d(c, z, 3, padding=1)
        dec.conv_in, dec.mid, dec.up = nn.Conv2d(z, c, 3, padding=1), _mid(c), nn.ModuleList()
        for i in reversed(range(len(widths))):
            w, last = widths[i], i == len(widths) - 1
            blocks = [Res(c if j == 0 else w, w) for j in range(2)]
            dec.up.insert(0, _level(blocks, [Attn(w), Attn(w)] if last else [], Resample(w, False) if i else None,
                                    "upsample"))
            c = w
        dec.norm_out, dec.conv_out = nn.GroupNorm(32, c, eps=1e-6), nn.Conv2d(c, 3, 3, padding=1)
        self.encoder, self.decoder = enc, dec
        self.quant_conv, self.post_quant_conv = nn.Conv2d(z, z, 3, padding=1), nn.Conv2d(z, z, 3, padding=1)
        self.quantize = nn.Module()
        self.quantize.embedding = nn.Embedding(vocab, z)
        self.quantize.quant_resi = nn.Module()
        self.quantize.quant_resi.qresi_ls = nn.ModuleList([nn.Conv2d(z, z, 3, padding=1) for _ in range(4)])
        self.quantize.register_buffer("ema_vocab_hit_SV", torch.zeros(len(SCALES), vocab))

    def run(self, part, x):
        h = part.conv_in(x)
        if part is self.decoder:
            h = part.mid.block_2(part.mid.attn_1(part.mid.block_1(h)))
        levels = part.down if part is self.encoder else reversed(list(part.up))
        for level in levels:
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            for name in ("downsample", "upsample"):
                if hasattr(level, name):
                    h = getattr(level, name)(h)
        if part is self.encoder:
            h = part.mid.block_2(part.mid.attn_1(part.mid.block_1(h)))
        return part.conv_out(F.silu(part.norm_out(h)))

    def phi(self, i, h):
        ticks = np.linspace(1 / 12, 11 / 12, 4)
        conv = self.quantize.quant_resi.qresi_ls[int(np.argmin(np.abs(ticks - i / (len(SCALES) - 1))))]
        return 0.5 * h + 0.5 * conv(h)

    @torch.no_grad()
    def tokens_and_images(self, x):
        f = self.quant_conv(self.run(self.encoder, x))
        b, z, g, _ = f.shape
        codes, rest, f_hat, ids = self.quantize.embedding.weight, f.clone(), torch.zeros_like(f), []
        for i, s in enumerate(SCALES):
            r = F.interpolate(rest, size=(s, s), mode="area") if s != g else rest
            rows = r.permute(0, 2, 3, 1).reshape(-1, z)
            idx = ((rows[:, None] - codes[None]) ** 2).sum(-1).argmin(1)
            h = codes[idx].reshape(b, s, s, z).permute(0, 3, 1, 2)
            h = self.phi(i, F.interpolate(h, size=(g, g), mode="bicubic") if s != g else h)
            f_hat, rest = f_hat + h, rest - h
            ids.append(idx.reshape(b, s * s))
        return torch.cat(ids, 1), self.run(self.decoder, self.post_quant_conv(f_hat))


def _release(tmp_path, seed=0):
    torch.manual_seed(seed)
    ref = ReleaseVAE().eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            is_norm_weight = "norm" in name and name.endswith("weight")
            p.copy_(torch.randn_like(p) * (0.3 if "norm" in name else 0.1) + (1.0 if is_norm_weight else 0.0))
    path = tmp_path / "vae_ch32v64z8.pth"
    torch.save(ref.state_dict(), path)
    return ref, path


def _images(n=2, seed=3):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_var_release_imports_with_the_same_ids_and_images(tmp_path):
    import mmtok
    from mmtok.export.interop import import_bundle

    ref, path = _release(tmp_path)
    report = import_bundle("var", path, tmp_path / "bundle")
    model = report["source"].model
    assert model["resolution"] == 32 and model["ch_mult"] == [1, 2] and model["attn_resolutions"] == [16]
    assert model["quantizer"]["scales"] == list(SCALES) and model["quantizer"]["phi_count"] == 4
    x = _images()
    ids_ref, images_ref = ref.tokens_and_images(x)
    tok = mmtok.load(tmp_path / "bundle")
    with torch.no_grad():
        ids = tok.model.encode(x)
        images = tok.model.decode(ids_ref)
    assert torch.equal(ids, ids_ref)
    assert (images - images_ref).abs().max() <= 1e-4 * images_ref.abs().max()


@pytest.mark.parametrize("break_rule", ["phi order", "decoder level order"])
def test_a_broken_name_rule_fails_the_parity_check(tmp_path, monkeypatch, break_rule):
    from mmtok.errors import CheckpointError
    from mmtok.export.interop import Rule, import_bundle
    from mmtok.families.var import interop

    rules = interop.rules

    def swap(s, a, b):
        return s.replace(a, "@").replace(b, a).replace("@", b)

    def broken(cfg):
        out = rules(cfg)
        if break_rule == "phi order":
            return [Rule(r.target, tuple(swap(s, "qresi_ls.0.", "qresi_ls.3.") for s in r.sources), r.how, r.value)
                    for r in out]
        return [Rule(r.target, tuple(swap(s, "decoder.up.0.", "decoder.up.1.") for s in r.sources), r.how, r.value)
                for r in out]

    monkeypatch.setattr(interop, "rules", broken)
    ref, path = _release(tmp_path)
    try:
        import_bundle("var", path, tmp_path / "bundle")
    except CheckpointError:
        return  # the shapes gave it away
    import mmtok

    x = _images()
    ids_ref, _ = ref.tokens_and_images(x)
    assert not torch.equal(mmtok.load(tmp_path / "bundle").model.encode(x), ids_ref)


def test_a_file_that_is_not_var_is_one_line(tmp_path):
    from mmtok.errors import CheckpointError
    from mmtok.export.interop import import_bundle

    ref, path = _release(tmp_path)
    state = torch.load(path, weights_only=True)
    state["quantize.ema_vocab_hit_SV"] = torch.zeros(7, 64)
    torch.save(state, tmp_path / "seven.pth")
    with pytest.raises(CheckpointError, match="trained with 7 scales"):
        import_bundle("var", tmp_path / "seven.pth", tmp_path / "b1")
    del state["quantize.embedding.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="no quantize.embedding.weight: not VAR's VQ-VAE"):
        import_bundle("var", tmp_path / "partial.pth", tmp_path / "b2")
