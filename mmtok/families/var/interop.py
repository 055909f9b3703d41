"""VAR's released tokenizer in: `mmtok import var vae_ch160v4096z32.pth bundles/var`.

The release (FoundationVision/VAR, models/vqvae.py and models/quant.py) is a plain state dict: taming's conv encoder /
decoder names (`encoder.down.{level}.block.{j}`, `.attn.{j}`, `.downsample.conv`, `encoder.mid.{block_1, attn_1,
block_2}`, `decoder.up.{level}` indexed by level, `norm_out`, `conv_out`) with a fused attention projection
(`attn.{j}.qkv`, one 1x1 conv of 3C outputs, where taming has q, k, v), 3x3 `quant_conv` / `post_quant_conv`, the
codebook `quantize.embedding.weight` [V, z], the phi convs `quantize.quant_resi.qresi_ls.{k}` and the buffer
`quantize.ema_vocab_hit_SV` [scales, V] (VAR's running code-hit counts: left out, mmtok counts usage itself; its
first dimension says how many scales the release was trained with). The conv blocks' names are the vqgan family's
taming layout (mmtok.families.vqgan.interop), reused here; only the attention and the quantizer differ.

The configuration comes from tensor shapes: widths, depth, attention levels, z, V, the phi count; the scales are
VAR's ten (1, 2, 3, 4, 5, 6, 8, 10, 13, 16) when the hit buffer has ten rows (another count
cannot be told from the file: refused in one line), so the resolution is 16 x the downsample factor (VAR's 256),
and the phi ratio VAR's 0.5.
"""
from __future__ import annotations

from pathlib import Path

from mmtok.errors import CheckpointError
from mmtok.export.interop import Rule, Source, refuse_config
from mmtok.export.release_files import read_torch
from mmtok.families.var.config import VAR_SCALES
from mmtok.families.vqgan.interop import rules as conv_rules

HITS = "quantize.ema_vocab_hit_SV"


def rules(cfg) -> list[Rule]:
    """One Rule per tensor of mmtok's VAR model of config `cfg` from the release's names."""
    out = []
    for rule in conv_rules(cfg, "taming"):  # the encoder / decoder under taming's names
        if rule.target.startswith("quantizer."):
            continue  # the vqgan quantizer's rules: VAR's quantizer is mapped below
        if rule.how == "cat":  # taming's separate q, k, v -> VAR's fused qkv conv
            block = rule.sources[0].rsplit(".q.", 1)[0]
            rule = Rule(rule.target, (f"{block}.qkv.{rule.target.rsplit('.', 1)[1]}",))
        out.append(rule)
    out += [Rule(f"{name}.{w}", (f"{name}.{w}",)) for name in ("quant_conv", "post_quant_conv")
            for w in ("weight", "bias")]
    out.append(Rule("quantizer.embedding", ("quantize.embedding.weight",)))
    phis = cfg.quantizer.phi_count or len(cfg.quantizer.scales)
    if cfg.quantizer.phi_ratio > 0:
        out += [Rule(f"quantizer.phis.{k}.{w}", (f"quantize.quant_resi.qresi_ls.{k}.{w}",))
                for k in range(phis) for w in ("weight", "bias")]
    out += [Rule("quantizer.initted", how="fill", value=1.0), Rule("quantizer.steps_unused", how="fill"),
            Rule("quantizer.restarts", how="fill")]
    return out


def infer_model(tensors) -> tuple[dict, str]:
    """(the model section, how it was found) from the release's tensor shapes (module docstring)."""
    for key in ("encoder.conv_in.weight", "quantize.embedding.weight", "quant_conv.weight", HITS):
        if key not in tensors:
            raise CheckpointError(f"no {key}: not VAR's VQ-VAE state dict",
                                  hint="`mmtok import var` reads VAR's vae_ch*v*z*.pth (models/vqvae.py's names)")
    ch = int(tensors["encoder.conv_in.weight"].shape[0])
    widths = []
    while f"encoder.down.{len(widths)}.block.0.conv1.weight" in tensors:
        widths.append(int(tensors[f"encoder.down.{len(widths)}.block.0.conv1.weight"].shape[0]))
    n_res = 0
    while f"encoder.down.0.block.{n_res}.conv1.weight" in tensors:
        n_res += 1
    if not widths or any(w % ch for w in widths) or not n_res:
        raise CheckpointError("cannot read the encoder's levels from the VAR tensors", hint="the file is partial")
    L = len(widths)
    res = VAR_SCALES[-1] * 2 ** (L - 1)  # the last scale is the token grid: 256 for the release's five levels
    attn = [res // 2**i for i in range(L) if f"encoder.down.{i}.attn.0.qkv.weight" in tensors]
    n_scales = int(tensors[HITS].shape[0])
    if n_scales != len(VAR_SCALES):
        raise CheckpointError(f"the release was trained with {n_scales} scales ({HITS} has {n_scales} rows); only "
                              f"VAR's {len(VAR_SCALES)} ({', '.join(map(str, VAR_SCALES))}) can be told from the file",
                              hint="import a release trained with VAR's default v_patch_nums")
    phis = 0
    while f"quantize.quant_resi.qresi_ls.{phis}.weight" in tensors:
        phis += 1
    k, z = (int(s) for s in tensors["quantize.embedding.weight"].shape)
    model = {"family": "var", "resolution": res, "in_channels": int(tensors["encoder.conv_in.weight"].shape[1]),
             "ch": ch, "ch_mult": [w // ch for w in widths], "num_res_blocks": n_res,
             "attn_resolutions": sorted(attn, reverse=True), "mid_attn": "encoder.mid.attn_1.qkv.weight" in tensors,
             "z_channels": z, "dropout": 0.0,
             "quantizer": {"kind": "var", "codebook_size": k, "scales": list(VAR_SCALES), "phi_count": phis,
                           "phi_ratio": 0.5 if phis else 0.0}}
    g = VAR_SCALES[-1]
    return model, f"inferred from tensor shapes (resolution {res}: a {g}x{g} grid; VAR's ten scales, phi ratio 0.5)"


def read_var(path: Path, *, config: str | None = None, weights: str = "ema"):
    """VAR's VQ-VAE .pth (a plain state dict, or one under "state_dict" / "model") -> (Source, rules)."""
    refuse_config("var", config, "the tensor shapes")
    ckpt, opaque = read_torch(path, "VAR VQ-VAE checkpoint (.pth)")
    tensors = ckpt
    if isinstance(ckpt, dict) and "encoder.conv_in.weight" not in ckpt:
        tensors = next((ckpt[k] for k in ("state_dict", "model") if isinstance(ckpt.get(k), dict)), ckpt)
    if not isinstance(tensors, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not VAR's state dict")
    model, how = infer_model(tensors)
    notes = [f"read {', '.join(opaque)} as inert records (not executed)"] if opaque else []
    src = Source(tensors=tensors, model=model, recipe="var_quickstart", config_from=how, notes=notes,
                 ignore={HITS: "VAR's running code-hit counts per scale: mmtok counts usage itself"})
    return src, rules
