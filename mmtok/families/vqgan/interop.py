"""Released VQGANs in and out: one conv architecture (taming's encoder / decoder, mmtok.nn.conv) under the three
naming schemes its releases use, and transformers' JanusVQVAE for `mmtok export --format hf`.

    taming     taming-transformers' VQGAN, a Lightning .ckpt ("state_dict": encoder.down.{level}.block.{j}, ...,
               decoder.up.{level}, quantize.embedding, quant_conv, post_quant_conv, loss.*). Meta's Chameleon image
               tokenizer is released in this layout. Its discriminator (loss.discriminator) becomes the bundle's
               adversary; its LPIPS copy (loss.perceptual_loss) is left out (mmtok reads LPIPS from its own asset).
    llamagen   LlamaGen's VQ-8 / VQ-16 .pt ({"ema" | "model" | "state_dict": encoder.conv_blocks.{level}.res.{j},
               ..., decoder.conv_blocks.{k}, quantize.embedding}, "discriminator", "args": an argparse.Namespace
               read as data). Codes l2-normalised.
    janus      transformers' JanusVQVAE folder (LlamaGen's architecture under taming's names, decoder stages in
               upsampling order), alone or inside a Janus model folder (model.vqmodel.*). Codes l2-normalised.

The layouts differ only in names; `LAYOUTS` says each one's, `_blocks` walks mmtok's modules in order, and `rules`
joins the two into one Rule per mmtok tensor. The configuration comes from the release's own file where it ships
one (taming's YAML, Janus's config.json, LlamaGen's pickled args), otherwise from tensor shapes.

Not here: transformers' ChameleonVQVAE holds the encoder and codebook only (no decoder), so it cannot be a bundle;
import Chameleon's released vqgan.ckpt with `taming` instead. Emu3VQVAE needs 3-D temporal convolutions and a
decoder normalised on the codes (SpatialNorm), which this family does not have.
"""
from __future__ import annotations

from pathlib import Path

from mmtok.errors import CheckpointError, MmtokError
from mmtok.export.interop import Rule, Source, codebook_fills, refuse_config
from mmtok.export.release_files import read_hf_folder, read_safetensors, read_torch

# Per layout: the stage lists of encoder and decoder, a res block's and an attention block's names inside a stage,
# the down / up sampling conv, the three middle blocks, and whether decoder stages are indexed by their level
# (taming) or in upsampling order (lowest resolution first).
LAYOUTS = {
    "taming": dict(enc="encoder.down", dec="decoder.up", res="block", down="downsample.conv", up="upsample.conv",
                   mid=("mid.block_1", "mid.attn_1", "mid.block_2"), dec_by_level=True),
    "janus": dict(enc="encoder.down", dec="decoder.up", res="block", down="downsample.conv", up="upsample.conv",
                  mid=("mid.block_1", "mid.attn_1", "mid.block_2"), dec_by_level=False),
    "llamagen": dict(enc="encoder.conv_blocks", dec="decoder.conv_blocks", res="res", down="downsample.conv",
                     up="upsample.conv", mid=("mid.0", "mid.1", "mid.2"), dec_by_level=False),
}
RES_PARAMS = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "shortcut": "nin_shortcut"}


def _blocks(cfg):
    """(mmtok prefix, kind, layout-neutral place) for every block of the conv encoder / decoder, in order. kind:
    "res" / "res+shortcut" / "attn" / "conv" / "norm"; place: ("enc" | "dec", level, "res" | "attn", j),
    (side, level, "resample"), (side, "mid", 0 | 1 | 2) or (side, "conv_in" | "norm_out" | "conv_out")."""
    ch, mult, n, L = cfg.ch, cfg.ch_mult, cfg.num_res_blocks, len(cfg.ch_mult)
    out = [("encoder.conv_in", "conv", ("enc", "conv_in"))]
    res, c_in = cfg.resolution, ch
    for level in range(L):
        attn, c_out = res in cfg.attn_resolutions, ch * mult[level]
        for j in range(n):
            step = 2 if attn else 1
            kind = "res+shortcut" if c_in != c_out else "res"
            out.append((f"encoder.down.{2 * level}.{j * step}", kind, ("enc", level, "res", j)))
            if attn:
                out.append((f"encoder.down.{2 * level}.{j * 2 + 1}", "attn", ("enc", level, "attn", j)))
            c_in = c_out
        if level != L - 1:
            out.append((f"encoder.down.{2 * level + 1}.conv", "conv", ("enc", level, "resample")))
            res //= 2
    out += _mid("encoder", "enc", cfg.mid_attn)
    out += [("encoder.norm_out", "norm", ("enc", "norm_out")), ("encoder.conv_out", "conv", ("enc", "conv_out")),
            ("decoder.conv_in", "conv", ("dec", "conv_in"))]
    out += _mid("decoder", "dec", cfg.mid_attn)
    res, c_in = cfg.resolution // cfg.downsample, ch * mult[-1]
    for k, level in enumerate(reversed(range(L))):
        attn, c_out = res in cfg.attn_resolutions, ch * mult[level]
        for j in range(n + 1):
            step = 2 if attn else 1
            kind = "res+shortcut" if c_in != c_out else "res"
            out.append((f"decoder.up.{2 * k}.{j * step}", kind, ("dec", level, "res", j)))
            if attn:
                out.append((f"decoder.up.{2 * k}.{j * 2 + 1}", "attn", ("dec", level, "attn", j)))
            c_in = c_out
        if level != 0:
            out.append((f"decoder.up.{2 * k + 1}.conv", "conv", ("dec", level, "resample")))
            res *= 2
    out += [("decoder.norm_out", "norm", ("dec", "norm_out")), ("decoder.conv_out", "conv", ("dec", "conv_out"))]
    return out


def _mid(prefix: str, side: str, attn: bool):
    blocks = [(f"{prefix}.mid.0", "res", (side, "mid", 0))]
    if attn:
        blocks.append((f"{prefix}.mid.1", "attn", (side, "mid", 1)))
    return blocks + [(f"{prefix}.mid.2", "res", (side, "mid", 2))]


def _source_name(place: tuple, layout: dict, levels: int) -> str:
    """The release's module name of a layout-neutral place."""
    side, what = place[0], place[1]
    top = "encoder" if side == "enc" else "decoder"
    if what in ("conv_in", "norm_out", "conv_out"):
        return f"{top}.{what}"
    if what == "mid":
        return f"{top}.{layout['mid'][place[2]]}"
    level = what
    index = level if side == "enc" or layout["dec_by_level"] else levels - 1 - level
    stage = f"{layout['enc' if side == 'enc' else 'dec']}.{index}"
    if place[2] == "resample":
        return f"{stage}.{layout['down' if side == 'enc' else 'up']}"
    return f"{stage}.{layout['res'] if place[2] == 'res' else 'attn'}.{place[3]}"


def rules(cfg, layout_name: str, *, export: bool = False) -> list[Rule]:
    """One Rule per tensor of mmtok's VQGAN of config `cfg` from the release layout `layout_name` (`export`: the
    codebook is written as unit rows, as a class that does not l2-normalise at encode time needs it)."""
    layout, L = LAYOUTS[layout_name], len(cfg.ch_mult)
    out: list[Rule] = []
    for mine, kind, place in _blocks(cfg):
        theirs = _source_name(place, layout, L)
        if kind.startswith("res"):
            params = [p for p in RES_PARAMS if p != "shortcut" or kind == "res+shortcut"]
            out += [Rule(f"{mine}.{p}.{w}", (f"{theirs}.{RES_PARAMS[p]}.{w}",))
                    for p in params for w in ("weight", "bias")]
        elif kind == "attn":
            for w in ("weight", "bias"):
                out += [Rule(f"{mine}.norm.{w}", (f"{theirs}.norm.{w}",)),
                        Rule(f"{mine}.qkv.{w}", tuple(f"{theirs}.{x}.{w}" for x in "qkv"), "cat"),
                        Rule(f"{mine}.proj.{w}", (f"{theirs}.proj_out.{w}",))]
        else:
            out += [Rule(f"{mine}.{w}", (f"{theirs}.{w}",)) for w in ("weight", "bias")]
    q = cfg.quantizer
    codes = "unit_rows" if export and q.l2_norm else "copy"
    out += [Rule("quantizer.codebook", ("quantize.embedding.weight",), codes),
            Rule("quantizer.proj_in.weight", ("quant_conv.weight",), "conv1x1"),
            Rule("quantizer.proj_in.bias", ("quant_conv.bias",)),
            Rule("quantizer.proj_out.weight", ("post_quant_conv.weight",), "conv1x1"),
            Rule("quantizer.proj_out.bias", ("post_quant_conv.bias",))]
    out += codebook_fills("quantizer")
    return out


def _rules_for(layout_name: str):
    return lambda cfg: rules(cfg, layout_name)


# ------------------------------------------------------------------------------------------------ configuration


def _levels(tensors, stage: str, res: str) -> list[int]:
    """Output channels of each level's first res block, from the encoder's stage list `stage`."""
    out = []
    while f"{stage}.{len(out)}.{res}.0.conv1.weight" in tensors:
        out.append(int(tensors[f"{stage}.{len(out)}.{res}.0.conv1.weight"].shape[0]))
    return out


def infer_model(tensors, layout_name: str, *, resolution: int | None, l2_norm: bool) -> tuple[dict, str]:
    """(the model section, how the configuration was found) from the tensor shapes of a release in `layout_name`.
    The shapes give every width, the depth, the attention levels and the codebook; the training resolution
    (which only names the attention levels) is `resolution` when the release says it, else 256."""
    layout = LAYOUTS[layout_name]
    if "encoder.conv_in.weight" not in tensors or "quantize.embedding.weight" not in tensors:
        raise CheckpointError(f"no encoder.conv_in / quantize.embedding tensors: not a {layout_name} VQGAN",
                              hint="check the format name (mmtok import --help lists them)")
    ch = int(tensors["encoder.conv_in.weight"].shape[0])
    widths = _levels(tensors, layout["enc"], layout["res"])
    if not widths or any(w % ch for w in widths):
        raise CheckpointError(f"cannot read the encoder's levels from the {layout_name} tensors",
                              hint="the file is partial or not a VQGAN of this layout")
    n_res = 0
    while f"{layout['enc']}.0.{layout['res']}.{n_res}.conv1.weight" in tensors:
        n_res += 1
    L = len(widths)
    res = resolution or 256
    enc_attn = [res // 2**i for i in range(L) if f"{layout['enc']}.{i}.attn.0.q.weight" in tensors]
    dec_index = (lambda lvl: lvl) if layout["dec_by_level"] else (lambda lvl: L - 1 - lvl)
    dec_attn = [res // 2**i for i in range(L) if f"{layout['dec']}.{dec_index(i)}.attn.0.q.weight" in tensors]
    if sorted(enc_attn) != sorted(dec_attn):
        raise CheckpointError(f"the {layout_name} encoder has attention at {enc_attn} and the decoder at {dec_attn}",
                              hint="mmtok's conv decoder attends at the same resolutions as its encoder; this "
                              "variant cannot be expressed")
    k, dim = (int(s) for s in tensors["quantize.embedding.weight"].shape)
    model = {"family": "vqgan", "resolution": res, "in_channels": int(tensors["encoder.conv_in.weight"].shape[1]),
             "ch": ch, "ch_mult": [w // ch for w in widths], "num_res_blocks": n_res,
             "attn_resolutions": sorted(enc_attn, reverse=True), "mid_attn": True,
             "z_channels": int(tensors["encoder.conv_out.weight"].shape[0]), "dropout": 0.0,
             "quantizer": {"kind": "vq", "codebook_size": k, "dim": dim, "l2_norm": l2_norm, "projection": "linear"}}
    how = "inferred from tensor shapes" + ("" if resolution else " (training resolution not recorded: 256 assumed)")
    return model, how


def _taming_yaml(path: Path, config: str | None) -> tuple[dict | None, str]:
    """(taming's model.params, its file) from --config or a configs/*.yaml beside the checkpoint's folder."""
    import yaml

    candidates = [Path(config)] if config else sorted(path.parent.parent.glob("configs/*.yaml"))
    for f in candidates:
        try:
            data = yaml.safe_load(f.read_text())
        except (OSError, yaml.YAMLError) as e:
            if config:
                raise CheckpointError(f"--config {f} is unreadable ({str(e)[:120]})") from None
            continue
        model = data.get("model") if isinstance(data, dict) else None
        params = model.get("params") if isinstance(model, dict) else None
        params = params if isinstance(params, dict) else {}
        if "ddconfig" in params:
            return params, str(f)
        if config:
            raise CheckpointError(f"--config {f} has no model.params.ddconfig: not a taming VQGAN config")
    return None, ""


def _from_taming_yaml(params: dict) -> dict:
    dd = params["ddconfig"]
    if dd.get("double_z"):
        raise CheckpointError("the taming config has double_z: true (a KL autoencoder), not a VQGAN",
                              hint="mmtok imports taming's VQModel")
    return {"family": "vqgan", "resolution": dd["resolution"], "in_channels": dd["in_channels"], "ch": dd["ch"],
            "ch_mult": list(dd["ch_mult"]), "num_res_blocks": dd["num_res_blocks"],
            "attn_resolutions": list(dd["attn_resolutions"]), "mid_attn": True, "z_channels": dd["z_channels"],
            "dropout": float(dd.get("dropout", 0.0)),
            "quantizer": {"kind": "vq", "codebook_size": params["n_embed"], "dim": params["embed_dim"],
                          "l2_norm": False, "projection": "linear"}}


# ------------------------------------------------------------------------------------------------ discriminators


def _adversary(disc: dict, where: str) -> tuple[dict | None, list[str], str]:
    """(the adversary's state keyed as mmtok's PatchGAN adversary, recipe overrides that build it, a note) from
    taming's / LlamaGen's NLayerDiscriminator tensors (`main.{i}.*`); (None, [], why) for another discriminator."""
    from mmtok.export.interop import apply_rules
    from mmtok.losses.adversarial import PatchDiscriminator

    convs = sorted(int(k.split(".")[1]) for k in disc if k.startswith("main.") and k.endswith(".weight")
                   and disc[k].dim() == 4)
    if not convs or any(".loc" in k or ".scale" in k for k in disc):
        return None, [], ("its discriminator is not a BatchNorm PatchGAN (e.g. ActNorm or StyleGAN): the adversary "
                          "starts fresh")
    ndf, n_layers = int(disc[f"main.{convs[0]}.weight"].shape[0]), len(convs) - 2
    net = PatchDiscriminator(int(disc[f"main.{convs[0]}.weight"].shape[1]), ndf, n_layers)
    rules_ = [Rule(f"discriminator.{k}", (f"main.{k.split('.', 1)[1]}",)) for k in
              (f"net.{name}" for name in net.net.state_dict())]
    state = {f"discriminator.net.{k}": v for k, v in net.net.state_dict().items()}
    try:
        mapped = apply_rules(rules_, disc, state, ignore={}, where=f"{where} (discriminator)", fmt="PatchGAN")
    except CheckpointError as e:
        return None, [], (f"its discriminator does not fit mmtok's PatchGAN ({e.message[:160]}): the adversary "
                          "starts fresh")
    return mapped, [f"loss.gan.ndf={ndf}", f"loss.gan.n_layers={n_layers}"], ""


# ------------------------------------------------------------------------------------------------ readers


def read_taming(path: Path, *, config: str | None = None, weights: str = "ema"):
    """taming's VQGAN Lightning checkpoint -> (Source, rules)."""
    ckpt, opaque = read_torch(path, "taming VQGAN checkpoint (.ckpt)")
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} has no state_dict: not a taming (Lightning) checkpoint",
                              hint="for LlamaGen's .pt files use `mmtok import llamagen`")
    tensors = {k: v for k, v in state.items() if not k.startswith("loss.")}
    params, cfg_file = _taming_yaml(path, config)
    if params:
        model, how = _from_taming_yaml(params), f"read from {cfg_file}"
    else:
        model, how = infer_model(tensors, "taming", resolution=None, l2_norm=False)
    disc = {k[len("loss.discriminator."):]: v for k, v in state.items() if k.startswith("loss.discriminator.")}
    adversary, overrides, why = _adversary(disc, str(path)) if disc else (None, [], "no discriminator in the file: "
                                                                          "the adversary starts fresh")
    notes = [why] if why else []
    if opaque:
        notes.append(f"read {', '.join(opaque)} as inert records (not executed)")
    ignore = {"loss.perceptual_loss.*": "taming's LPIPS copy: mmtok reads LPIPS from its own asset",
              "loss.discriminator.*": "the discriminator: adversary.safetensors" if adversary else
              "a discriminator mmtok's PatchGAN cannot hold"}
    src = Source(tensors={**tensors, **{k: v for k, v in state.items() if k.startswith("loss.")}}, model=model,
                 recipe="taming_f16_1024", ignore=ignore, adversary=adversary, overrides=overrides,
                 step=int(ckpt.get("global_step", -1)), weights="raw", config_from=how, notes=notes)
    return src, _rules_for("taming")


def read_llamagen(path: Path, *, config: str | None = None, weights: str = "ema"):
    """LlamaGen's VQ-8 / VQ-16 .pt -> (Source, rules). EMA weights when the file has them and `weights` is "ema"."""
    refuse_config("llamagen", config, "the file (tensor shapes and its pickled args)")
    ckpt, opaque = read_torch(path, "LlamaGen VQ checkpoint (.pt)")
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, not LlamaGen's checkpoint dict")
    order = ["ema", "model", "state_dict"] if weights == "ema" else ["model", "state_dict", "ema"]
    key = next((k for k in order if isinstance(ckpt.get(k), dict)), None)
    if key is None:
        if "encoder.conv_in.weight" in ckpt:  # a bare state dict
            key, tensors = "(bare state dict)", ckpt
        else:
            raise CheckpointError(f"{path} has none of 'ema', 'model', 'state_dict': not a LlamaGen VQ checkpoint",
                                  hint="for taming's Lightning .ckpt use `mmtok import taming`")
    else:
        tensors = ckpt[key]
    args = ckpt.get("args")
    args = args.as_dict() if hasattr(args, "as_dict") else (args if isinstance(args, dict) else {})
    image_size = args.get("image_size") if isinstance(args.get("image_size"), int) else None
    l2 = args.get("codebook_l2_norm", True)
    model, how = infer_model(tensors, "llamagen", resolution=image_size, l2_norm=bool(l2))
    if args:
        how += " (image size and l2 normalisation from the pickled args)"
    disc = ckpt.get("discriminator") if isinstance(ckpt.get("discriminator"), dict) else {}
    adversary, overrides, why = _adversary(disc, str(path)) if disc else (None, [], "no discriminator in the file: "
                                                                          "the adversary starts fresh")
    notes = [f"weights: '{key}'" + (" (no EMA copy in the file)" if weights == "ema" and key != "ema" else "")]
    notes += [why] if why else []
    if opaque:
        notes.append(f"read {', '.join(opaque)} as inert records (not executed)")
    recipe = "llamagen_vq8" if len(model["ch_mult"]) == 4 else "llamagen_vq16"
    src = Source(tensors=tensors, model=model, recipe=recipe,
                 ignore={"quantize.codebook_used": "LlamaGen's running record of recent ids (usage logging)"},
                 adversary=adversary, overrides=overrides, step=int(ckpt.get("steps", -1)),
                 weights="ema" if key == "ema" else "raw", config_from=how, notes=notes)
    return src, _rules_for("llamagen")


def read_janus(path: Path, *, config: str | None = None, weights: str = "ema"):
    """transformers' JanusVQVAE folder, or a Janus model folder (its vqmodel) -> (Source, rules)."""
    refuse_config("janus", config, "the folder's config.json")
    cfg, files = read_hf_folder(path)
    if cfg.get("model_type") == "janus":
        cfg, prefix = cfg.get("vq_config") or {}, "model.vqmodel."
    elif cfg.get("model_type") == "janus_vqgan":
        prefix = ""
    else:
        raise CheckpointError(f"{path}/config.json is a {cfg.get('model_type')!r} model, not JanusVQVAE",
                              hint="give a JanusVQVAE folder or a Janus model folder")
    tensors = read_safetensors(files, prefix)
    mult = list(cfg.get("channel_multiplier", [1, 1, 2, 2, 4]))
    grid = int(cfg.get("num_patches", 32))
    if cfg.get("double_latent") or cfg.get("out_channels", 3) != cfg.get("in_channels", 3):
        raise CheckpointError("this JanusVQVAE config (double_latent, or out_channels != in_channels) has no "
                              "counterpart in mmtok's VQGAN")
    model = {"family": "vqgan", "resolution": grid * 2 ** (len(mult) - 1), "in_channels": cfg.get("in_channels", 3),
             "ch": cfg.get("base_channels", 128), "ch_mult": mult, "num_res_blocks": cfg.get("num_res_blocks", 2),
             "attn_resolutions": [grid], "mid_attn": True, "z_channels": cfg.get("latent_channels", 256),
             "dropout": float(cfg.get("dropout", 0.0)),
             "quantizer": {"kind": "vq", "codebook_size": cfg.get("num_embeddings", 16384),
                           "dim": cfg.get("embed_dim", 8), "l2_norm": True, "projection": "linear"}}
    notes = ["no discriminator in a transformers folder: the adversary starts fresh"]
    codes = tensors.get("quantize.embedding.weight")
    if codes is not None and float((codes.float().norm(dim=1) - 1).abs().max()) > 1e-3:
        notes.append("the codebook rows are not unit length: transformers' JanusVQVAE.encode (no l2 normalisation) "
                     "picks other ids than Janus's own l2-normalised search, which mmtok follows")
    src = Source(tensors=tensors, model=model, recipe="llamagen_vq16", weights="raw",
                 config_from=f"read from {Path(path) / 'config.json'}", notes=notes)
    return src, _rules_for("janus")


# ------------------------------------------------------------------------------------------------ export


def to_janus(model, recipe):
    """mmtok's VQGAN -> (transformers' JanusVQVAE holding the same weights, strictly loaded; the check of its own
    encode / decode against `model` on random images), or MmtokError naming what JanusVQVAE cannot express."""
    import torch

    from mmtok.export.interop import invert_rules, plain_state, transformers_classes

    cfg = model.cfg
    q = cfg.quantizer
    problems = []
    if q.kind == "vq" and q.code_output == "raw":
        problems.append("its codes are decoded raw (code_output: raw); JanusVQVAE decodes l2-normalised codes")
    if q.kind != "vq" or not q.l2_norm:
        problems.append("its codes are not one l2-normalised codebook (JanusVQVAE normalises codes when decoding)")
    if not cfg.mid_attn or list(cfg.attn_resolutions) != [cfg.grid]:
        problems.append(f"attention at {cfg.attn_resolutions} (mid {cfg.mid_attn}); JanusVQVAE attends at the "
                        f"lowest resolution only ([{cfg.grid}]) and in the middle")
    widths = [cfg.ch * m for m in cfg.ch_mult]
    if any(w % 32 for w in widths):
        problems.append(f"channel widths {widths} are not multiples of 32 (JanusVQVAE's GroupNorm has 32 groups)")
    if q.kind == "vq" and q.dim == cfg.z_channels and q.projection != "linear":
        problems.append("no projection around the codes (JanusVQVAE has quant_conv / post_quant_conv)")
    if problems:
        raise MmtokError("transformers has no class for this VQGAN: " + "; ".join(problems),
                         hint="--format hf writes LlamaGen-style VQGANs (presets llamagen_vq8 / llamagen_vq16)")
    JanusVQVAE, JanusVQVAEConfig = transformers_classes("JanusVQVAE", "JanusVQVAEConfig")
    hf_cfg = JanusVQVAEConfig(embed_dim=q.dim, num_embeddings=q.codebook_size, double_latent=False,
                              latent_channels=cfg.z_channels, in_channels=cfg.in_channels, out_channels=cfg.in_channels,
                              base_channels=cfg.ch, channel_multiplier=list(cfg.ch_mult),
                              num_res_blocks=cfg.num_res_blocks, dropout=cfg.dropout, num_patches=cfg.grid)
    hf = JanusVQVAE(hf_cfg).eval()
    state = invert_rules(rules(cfg, "janus", export=True), plain_state(model))
    with torch.no_grad():
        hf.load_state_dict(state, strict=True)
        x = torch.rand(2, cfg.in_channels, cfg.resolution, cfg.resolution,
                       generator=torch.Generator().manual_seed(0)) * 2 - 1
        ids, images = janus_ids_and_images(hf, x)
        own_ids = model.encode(x)
        check = {"inputs": "2 random images", "ids_equal": float((ids == own_ids).float().mean()),
                 "max_output_difference": float((images - model.decode(own_ids)).abs().max())}
    return hf, check


def janus_ids_and_images(hf, x):
    """(ids [B, h, w], decoded images) of transformers' JanusVQVAE for images x: its own encode and decode."""
    b = x.shape[0]
    ids = hf.encode(x).image_tokens.reshape(b, -1)
    g = hf.quantize.quant_state_dims
    return ids.reshape(b, *g), hf.decode(ids)
