"""Released codecs in and out: DAC's and EnCodec's architectures under the naming schemes of their releases, and
transformers' DacModel / EncodecModel for `mmtok export --format hf`.

DAC's architecture is the `dac_44k` preset (Snake, three residual units with dilations 1, 3, 9 per block, a
kernel-3 conv to the latent, factorised codes searched l2-normalised and decoded raw):

    dac   a file: descript-audio-codec's own weights (`.pth`: "state_dict" with weight_g / weight_v pairs,
          "metadata": {"kwargs": DAC's constructor arguments}; encoder.block.{i}, decoder.model.{i}, nn.Sequential
          indices); a folder: transformers' DacModel (config.json + safetensors; encoder.block.{b}.res_unit{u},
          plain weights).

EnCodec 24 kHz's is the `encodec_24k` preset (reflection padding, causal, 1x1 conv shortcuts, an LSTM at the
bottom, no final tanh, EMA codebooks on the 128-d latent):

    encodec  a file: EnCodec's own state dict (`.th`; facebookresearch/encodec and audiocraft: encoder.model.{i}
             .conv.conv with weight_g / weight_v, decoder transposed convs under convtr.convtr,
             quantizer.vq.layers.{i}._codebook); a folder: transformers' EncodecModel (encoder.layers.{i}.conv,
             quantizer.layers.{i}.codebook).

Rules speak of plain weights (mmtok.export.interop.plain_state): g / v pairs are merged on reading.

Not here: EnCodec 48 kHz (volume normalisation, time-group norm, overlapping chunks) and Mimi (a transformer
bottleneck and a split RVQ: one semantic level distilled from WavLM plus acoustic levels) need parts the `codec`
family does not have.
"""
from __future__ import annotations

import math
from pathlib import Path

from mmtok.errors import CheckpointError, MmtokError
from mmtok.export.interop import Rule, Source, codebook_fills, refuse_config
from mmtok.export.release_files import merge_weight_norm, read_hf_folder, read_safetensors, read_torch

RES_UNITS, DILATION_BASE = 3, 3  # DAC's residual units: dilations 1, 3, 9
# Per layout: a module name for each layout-neutral place (see _places)
ORIGINAL = dict(
    enc_in="encoder.block.0", enc_unit="encoder.block.{b1}.block.{u}", enc_snake="encoder.block.{b1}.block.3",
    enc_down="encoder.block.{b1}.block.4", enc_out_snake="encoder.block.{n1}", enc_out="encoder.block.{n2}",
    dec_in="decoder.model.0", dec_snake="decoder.model.{b1}.block.0", dec_up="decoder.model.{b1}.block.1",
    dec_unit="decoder.model.{b1}.block.{u2}", dec_out_snake="decoder.model.{n1}", dec_out="decoder.model.{n2}",
    unit=("block.0", "block.1", "block.2", "block.3"))
TRANSFORMERS = dict(
    enc_in="encoder.conv1", enc_unit="encoder.block.{b}.res_unit{u1}", enc_snake="encoder.block.{b}.snake1",
    enc_down="encoder.block.{b}.conv1", enc_out_snake="encoder.snake1", enc_out="encoder.conv2",
    dec_in="decoder.conv1", dec_snake="decoder.block.{b}.snake1", dec_up="decoder.block.{b}.conv_t1",
    dec_unit="decoder.block.{b}.res_unit{u1}", dec_out_snake="decoder.snake1", dec_out="decoder.conv2",
    unit=("snake1", "conv1", "snake2", "conv2"))


def _places(cfg):
    """(mmtok module, kind, place name, format arguments) for every module of the SEANet encoder / decoder with
    DAC's layout (no bottleneck). kind: "conv" (weight, bias), "snake" (alpha) or "unit" (a residual unit)."""
    B, step = len(cfg.strides), RES_UNITS + 2
    out = [("encoder.net.0", "conv", "enc_in", {})]
    for b in range(B):
        base = 1 + b * step
        for u in range(RES_UNITS):
            out.append((f"encoder.net.{base + u}", "unit", "enc_unit", dict(b=b, b1=b + 1, u=u, u1=u + 1)))
        out += [(f"encoder.net.{base + RES_UNITS}", "snake", "enc_snake", dict(b=b, b1=b + 1)),
                (f"encoder.net.{base + RES_UNITS + 1}", "conv", "enc_down", dict(b=b, b1=b + 1))]
    out += [(f"encoder.net.{1 + B * step}", "snake", "enc_out_snake", dict(n1=B + 1)),
            (f"encoder.net.{2 + B * step}", "conv", "enc_out", dict(n2=B + 2)),
            ("decoder.net.0", "conv", "dec_in", {})]
    for b in range(B):
        base = 1 + b * step
        out += [(f"decoder.net.{base}", "snake", "dec_snake", dict(b=b, b1=b + 1)),
                (f"decoder.net.{base + 1}", "conv", "dec_up", dict(b=b, b1=b + 1))]
        for u in range(RES_UNITS):
            out.append((f"decoder.net.{base + 2 + u}", "unit", "dec_unit", dict(b=b, b1=b + 1, u1=u + 1, u2=u + 2)))
    out += [(f"decoder.net.{1 + B * step}", "snake", "dec_out_snake", dict(n1=B + 1)),
            (f"decoder.net.{2 + B * step}", "conv", "dec_out", dict(n2=B + 2))]
    return out


def rules(cfg, layout: dict) -> list[Rule]:
    """One Rule per plain tensor of mmtok's codec (DAC's architecture) from a DAC layout (ORIGINAL or TRANSFORMERS)."""
    out: list[Rule] = []

    def conv(mine, theirs):
        return [Rule(f"{mine}.{w}", (f"{theirs}.{w}",)) for w in ("weight", "bias")]

    for mine, kind, place, args in _places(cfg):
        theirs = layout[place].format(**args)
        if kind == "conv":
            out += conv(mine, theirs)
        elif kind == "snake":
            out.append(Rule(f"{mine}.alpha", (f"{theirs}.alpha",)))
        else:
            snake1, conv1, snake2, conv2 = (f"{theirs}.{p}" for p in layout["unit"])
            out += [Rule(f"{mine}.block.0.alpha", (f"{snake1}.alpha",)), *conv(f"{mine}.block.1", conv1),
                    Rule(f"{mine}.block.2.alpha", (f"{snake2}.alpha",)), *conv(f"{mine}.block.3", conv2)]
    for i in range(cfg.quantizer.levels):
        mine, theirs = f"quantizer.quantizers.{i}", f"quantizer.quantizers.{i}"
        out += [Rule(f"{mine}.codebook", (f"{theirs}.codebook.weight",)),
                Rule(f"{mine}.proj_in.weight", (f"{theirs}.in_proj.weight",), "conv1d_k1"),
                Rule(f"{mine}.proj_in.bias", (f"{theirs}.in_proj.bias",)),
                Rule(f"{mine}.proj_out.weight", (f"{theirs}.out_proj.weight",), "conv1d_k1"),
                Rule(f"{mine}.proj_out.bias", (f"{theirs}.out_proj.bias",))]
        out += codebook_fills(mine)
    out += [Rule("quantizer.dropout_seed", how="fill"), Rule("quantizer.dropout_step", how="fill")]
    return out


def dac_model(*, sample_rate: int, ch: int, strides: list[int], latent_dim: int, decoder_ch: int, levels: int,
              codebook_size: int, dim: int) -> dict:
    """The model section of DAC's architecture at these sizes (the `dac_44k` preset's fixed choices)."""
    hop = math.prod(strides)
    return {"family": "codec", "sample_rate": sample_rate, "channels": 1,
            "segment_seconds": round(64 * hop / sample_rate, 6), "ch": ch, "strides": list(strides),
            "res_units": RES_UNITS, "dilation_base": DILATION_BASE,
            "kernel_size": 7, "latent_kernel_size": 3, "decoder_ch": decoder_ch, "residual_kernel_size": 7,
            "activation": "snake", "latent_dim": latent_dim, "bottleneck": "none", "upsampling": "dac",
            "padding": "zeros", "causal": False, "conv_shortcut": False, "final_tanh": True,
            "quantizer": {"kind": "rvq", "levels": levels, "codebook_size": codebook_size, "dim": dim,
                          "l2_norm": True, "code_output": "raw", "ema": False, "kmeans_init": False,
                          "restart_after": 0, "quantizer_dropout": 0.5, "dropout_per": "sample"}}


def read_dac(path: Path, *, config: str | None = None, weights: str = "ema"):
    """DAC's own weights file, or a transformers DacModel folder -> (Source, rules)."""
    refuse_config("dac", config, "the release (its metadata.kwargs or config.json)")
    if path.is_dir():
        return _read_transformers(path)
    ckpt, opaque = read_torch(path, "DAC weights file (.pth)")
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} has no state_dict: not DAC's weights file",
                              hint="give DAC's .pth (from dac.utils.download) or a transformers DacModel folder")
    tensors = merge_weight_norm(state)
    kw = (ckpt.get("metadata") or {}).get("kwargs") if isinstance(ckpt.get("metadata"), dict) else None
    if not isinstance(kw, dict):
        raise CheckpointError(f"{path} has no metadata.kwargs (DAC's constructor arguments)",
                              hint="the file is not one DAC saved, or it was re-saved without its metadata")
    strides = list(kw.get("encoder_rates", [2, 4, 8, 8]))
    if list(kw.get("decoder_rates", strides[::-1])) != strides[::-1]:
        raise CheckpointError(f"DAC decoder_rates {kw['decoder_rates']} are not the encoder's reversed "
                              f"({strides[::-1]})",
                              hint="mmtok's codec decoder mirrors its encoder; this variant cannot be expressed")
    ch = int(kw.get("encoder_dim", 64))
    dim = kw.get("codebook_dim", 8)
    if isinstance(dim, (list, tuple)):
        if len(set(dim)) != 1:
            raise CheckpointError(f"per-level codebook dimensions {dim}: mmtok's RVQ has one dimension for all levels")
        dim = dim[0]
    model = dac_model(sample_rate=int(kw.get("sample_rate", 44100)), ch=ch, strides=strides,
                      latent_dim=int(kw.get("latent_dim") or ch * 2 ** len(strides)),
                      decoder_ch=int(kw.get("decoder_dim", 1536)), levels=int(kw.get("n_codebooks", 9)),
                      codebook_size=int(kw.get("codebook_size", 1024)), dim=int(dim))
    notes = ["no discriminator in DAC's released weights: the adversary starts fresh"]
    if opaque:
        notes.append(f"read {', '.join(opaque)} as inert records (not executed)")
    src = Source(tensors=tensors, model=model, recipe="audio_quickstart", weights="raw",
                 config_from="read from the file's metadata.kwargs", notes=notes)
    return src, lambda cfg: rules(cfg, ORIGINAL)


def _read_transformers(path: Path):
    cfg, files = read_hf_folder(path)
    if cfg.get("model_type") != "dac":
        raise CheckpointError(f"{path}/config.json is a {cfg.get('model_type')!r} model, not DacModel",
                              hint="give a transformers DacModel folder or DAC's own .pth file")
    strides = list(cfg.get("downsampling_ratios", [2, 4, 8, 8]))
    ch = int(cfg.get("encoder_hidden_size", 64))
    model = dac_model(sample_rate=int(cfg.get("sampling_rate", 16000)), ch=ch, strides=strides,
                      latent_dim=ch * 2 ** len(strides), decoder_ch=int(cfg.get("decoder_hidden_size", 1536)),
                      levels=int(cfg.get("n_codebooks", 9)), codebook_size=int(cfg.get("codebook_size", 1024)),
                      dim=int(cfg.get("codebook_dim", 8)))
    src = Source(tensors=merge_weight_norm(read_safetensors(files)), model=model, recipe="audio_quickstart",
                 weights="raw", config_from=f"read from {path / 'config.json'}",
                 notes=["no discriminator in a transformers folder: the adversary starts fresh"])
    return src, lambda c: rules(c, TRANSFORMERS)


def to_hf(model, recipe):
    """`mmtok export --format hf` for a codec: EnCodec's padding -> EncodecModel, otherwise DacModel."""
    return (to_encodec if model.cfg.padding == "encodec" else to_dac)(model, recipe)


def to_dac(model, recipe):
    """mmtok's codec -> (transformers' DacModel holding the same weights, strictly loaded; the check of its own
    encode / decode against `model` on random audio), or MmtokError naming what DacModel cannot express."""
    import torch

    from mmtok.export.interop import invert_rules, load_plain, plain_state, transformers_classes

    c, q = model.cfg, model.cfg.quantizer
    want = dac_model(sample_rate=c.sample_rate, ch=c.ch, strides=c.strides, latent_dim=c.ch * 2 ** len(c.strides),
                     decoder_ch=c.decoder_width, levels=q.levels, codebook_size=q.codebook_size, dim=q.dim)
    have = c.model_dump(mode="json")
    skip = {"segment_seconds", "loudness_lufs", "preset", "bottleneck_layers", "bottleneck_heads"}
    if all(s % 2 == 0 for s in c.strides):
        skip.add("upsampling")  # the two upsampling rules agree at even strides
    have["decoder_ch"] = c.decoder_width  # null means the encoder's widest: compare the width itself
    differ = [k for k in want if k not in skip and k != "quantizer" and have.get(k) != want[k]]
    differ += [f"quantizer.{k}" for k in ("kind", "l2_norm", "code_output")
               if have["quantizer"].get(k) != want["quantizer"][k]]
    if differ:
        raise MmtokError("transformers has no class for this codec: DacModel needs DAC's architecture, and this "
                         "model differs in " + ", ".join(differ[:5]),
                         hint="--format hf writes codecs of DAC's architecture (preset dac_44k)")
    DacConfig, DacModel = transformers_classes("DacConfig", "DacModel")
    hf = DacModel(DacConfig(encoder_hidden_size=c.ch, downsampling_ratios=list(c.strides),
                            decoder_hidden_size=c.decoder_width, n_codebooks=q.levels, codebook_size=q.codebook_size,
                            codebook_dim=q.dim, sampling_rate=c.sample_rate)).eval()
    state = invert_rules(rules(c, TRANSFORMERS), plain_state(model))
    with torch.no_grad():
        load_plain(hf, state)
        x = torch.rand(2, 1, 8 * c.hop, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
        ids = hf.encode(x).audio_codes.transpose(1, 2)
        own_ids = model.encode(x)
        audio = hf.decode(audio_codes=own_ids.transpose(1, 2)).audio_values
        own = model.decode(own_ids)[:, 0]  # DAC's output is short by one sample per odd stride; mmtok pads zeros
        n = audio.shape[-1]
        check = {"inputs": "2 random waveforms", "ids_equal": float((ids == own_ids).float().mean()),
                 "max_output_difference": max(float((audio - own[:, :n]).abs().max()), float(own[:, n:].abs().sum()))}
    return hf, check


# ------------------------------------------------------------------------------------------------ EnCodec

# Per layout: the stage lists, how a conv's / a transposed conv's tensors are named inside its wrapper, and the
# codebook of RVQ level i (EnCodec's EMA buffers).
ENCODEC_LAYOUTS = {
    "original": dict(enc="encoder.model", dec="decoder.model", conv="conv.conv", convtr="convtr.convtr",
                     codebook="quantizer.vq.layers.{i}._codebook"),
    "transformers": dict(enc="encoder.layers", dec="decoder.layers", conv="conv", convtr="conv",
                         codebook="quantizer.layers.{i}.codebook"),
}
EMA_BUFFERS = {"codebook": "embed", "ema_sum": "embed_avg", "ema_count": "cluster_size"}


def _encodec_places(cfg):
    """(side, index, kind) of every module with weights in EnCodec's SEANet (the same indices in mmtok's
    encoder.net / decoder.net, EnCodec's model Sequential and transformers' layers ModuleList). kind: "conv",
    "convtr", "unit" or "lstm"."""
    B, n, step = len(cfg.strides), cfg.res_units, cfg.res_units + 2
    enc = [(0, "conv")]
    for b in range(B):
        enc += [(1 + b * step + j, "unit") for j in range(n)] + [(1 + b * step + n + 1, "conv")]
    enc += [(1 + B * step, "lstm"), (3 + B * step, "conv")]
    dec = [(0, "conv"), (1, "lstm")]
    for b in range(B):
        dec += [(3 + b * step, "convtr")] + [(4 + b * step + j, "unit") for j in range(n)]
    dec += [(3 + B * step, "conv")]
    return [("encoder", i, k) for i, k in enc] + [("decoder", i, k) for i, k in dec]


def encodec_rules(cfg, layout_name: str) -> list[Rule]:
    """One Rule per plain tensor of mmtok's codec (EnCodec's architecture) from an EnCodec layout."""
    layout, out = ENCODEC_LAYOUTS[layout_name], []

    def conv(mine, theirs, wrapper="conv"):
        return [Rule(f"{mine}.{w}", (f"{theirs}.{layout[wrapper]}.{w}",)) for w in ("weight", "bias")]

    for side, i, kind in _encodec_places(cfg):
        mine, theirs = f"{side}.net.{i}", f"{layout['enc' if side == 'encoder' else 'dec']}.{i}"
        if kind in ("conv", "convtr"):
            out += conv(mine, theirs, kind)
        elif kind == "unit":
            out += conv(f"{mine}.block.1", f"{theirs}.block.1") + conv(f"{mine}.block.3", f"{theirs}.block.3")
            out += conv(f"{mine}.shortcut", f"{theirs}.shortcut") if cfg.conv_shortcut else []
        else:
            out += [Rule(f"{mine}.net.{w}_l{k}", (f"{theirs}.lstm.{w}_l{k}",))
                    for k in range(cfg.bottleneck_layers) for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    for i in range(cfg.quantizer.levels):
        mine, theirs = f"quantizer.quantizers.{i}", layout["codebook"].format(i=i)
        out += [Rule(f"{mine}.{k}", (f"{theirs}.{v}",)) for k, v in EMA_BUFFERS.items()]
        out += codebook_fills(mine)
    out += [Rule("quantizer.dropout_seed", how="fill"), Rule("quantizer.dropout_step", how="fill")]
    return out


def encodec_model(*, sample_rate: int, channels: int, ch: int, strides: list[int], res_units: int,
                  dilation_base: int, kernel_size: int, residual_kernel_size: int, latent_dim: int, lstm_layers: int,
                  causal: bool, conv_shortcut: bool, levels: int, codebook_size: int) -> dict:
    """The model section of EnCodec's architecture (the `encodec_24k` preset's fixed choices) at these sizes."""
    hop = math.prod(strides)
    return {"family": "codec", "sample_rate": sample_rate, "channels": channels,
            "segment_seconds": round(64 * hop / sample_rate, 6), "ch": ch, "strides": list(strides),
            "res_units": res_units, "dilation_base": dilation_base, "kernel_size": kernel_size,
            "residual_kernel_size": residual_kernel_size, "activation": "elu", "latent_dim": latent_dim,
            "bottleneck": "lstm", "bottleneck_layers": lstm_layers, "padding": "encodec", "causal": causal,
            "conv_shortcut": conv_shortcut, "final_tanh": False,
            "quantizer": {"kind": "rvq", "levels": levels, "codebook_size": codebook_size, "dim": latent_dim,
                          "l2_norm": False, "ema": True, "ema_decay": 0.99, "kmeans_init": True,
                          "restart_after": 0, "quantizer_dropout": 1.0, "dropout_per": "batch"}}


def _levels(tensors, codebook: str) -> int:
    n = 0
    while f"{codebook.format(i=n)}.embed" in tensors:
        n += 1
    return n


def read_encodec(path: Path, *, config: str | None = None, weights: str = "ema"):
    """EnCodec's own state dict (`.th`, facebookresearch/encodec and audiocraft's layout), or a transformers
    EncodecModel folder -> (Source, rules)."""
    refuse_config("encodec", config, "the release (tensor shapes, or the folder's config.json)")
    if path.is_dir():
        return _read_encodec_transformers(path)
    state, opaque = read_torch(path, "EnCodec checkpoint (.th)")
    state = state.get("best_state", state) if isinstance(state, dict) else state  # audiocraft keeps it there
    if not isinstance(state, dict) or "encoder.model.0.conv.conv.bias" not in state:
        raise CheckpointError(f"{path} is not EnCodec's state dict (no encoder.model.0.conv.conv)",
                              hint="give encodec_24khz-*.th, or a transformers EncodecModel folder")
    tensors = merge_weight_norm(state)
    layout = ENCODEC_LAYOUTS["original"]
    model = _infer_encodec(tensors, layout)
    notes = ["no discriminator in EnCodec's released weights: the adversary starts fresh",
             "configuration inferred from tensor shapes; 24 kHz, mono, causal and the conv shortcut assumed as in "
             "encodec_model_24khz (the 48 kHz model normalises volume and uses time-group norm: not importable)"]
    if opaque:
        notes.append(f"read {', '.join(opaque)} as inert records (not executed)")
    src = Source(tensors=tensors, model=model, recipe="audio_quickstart", weights="raw",
                 ignore={"quantizer.vq.layers.*._codebook.inited": "EnCodec's k-means-done flag (set in mmtok)"},
                 config_from="inferred from tensor shapes (encodec_model_24khz's settings)", notes=notes)
    return src, lambda cfg: encodec_rules(cfg, "original")


def _infer_encodec(tensors, layout) -> dict:
    first = tensors["encoder.model.0.conv.conv.weight"]
    ch, channels, kernel = int(first.shape[0]), int(first.shape[1]), int(first.shape[2])
    strides, i = [], 1
    while f"{layout['enc']}.{i}.block.1.conv.conv.weight" in tensors:
        n = 0
        while f"{layout['enc']}.{i + n}.block.1.conv.conv.weight" in tensors:
            n += 1
        down = tensors[f"{layout['enc']}.{i + n + 1}.conv.conv.weight"]
        strides.append(int(down.shape[2]) // 2)
        i += n + 2
    lstm = sum(1 for k in tensors if k.startswith(f"{layout['enc']}.{i}.lstm.weight_ih_l"))
    codebook = tensors["quantizer.vq.layers.0._codebook.embed"]
    res_kernel = int(tensors[f"{layout['enc']}.1.block.1.conv.conv.weight"].shape[2])
    return encodec_model(sample_rate=24000, channels=channels, ch=ch, strides=strides, res_units=n,
                         dilation_base=2, kernel_size=kernel, residual_kernel_size=res_kernel,
                         latent_dim=int(codebook.shape[1]), lstm_layers=lstm, causal=True,
                         conv_shortcut=f"{layout['enc']}.1.shortcut.conv.conv.weight" in tensors,
                         levels=_levels(tensors, layout["codebook"]), codebook_size=int(codebook.shape[0]))


def _read_encodec_transformers(path: Path):
    cfg, files = read_hf_folder(path)
    if cfg.get("model_type") != "encodec":
        raise CheckpointError(f"{path}/config.json is a {cfg.get('model_type')!r} model, not EncodecModel",
                              hint="give a transformers EncodecModel folder or EnCodec's own .th file")
    unsupported = [f"{k}={cfg.get(k)!r}" for k, ok in [
        ("norm_type", cfg.get("norm_type", "weight_norm") == "weight_norm"),
        ("pad_mode", cfg.get("pad_mode", "reflect") == "reflect"), ("compress", cfg.get("compress", 2) == 2),
        ("normalize", not cfg.get("normalize", False)), ("trim_right_ratio", cfg.get("trim_right_ratio", 1.0) == 1.0),
        ("last_kernel_size", cfg.get("last_kernel_size", 7) == cfg.get("kernel_size", 7)),
        ("codebook_dim", (cfg.get("codebook_dim") or cfg.get("hidden_size", 128)) == cfg.get("hidden_size", 128))]
        if not ok]
    if unsupported:
        raise CheckpointError(f"this EncodecModel ({', '.join(unsupported)}) has no counterpart in mmtok's codec",
                              hint="mmtok imports EnCodec 24 kHz (weight norm, reflect padding, no volume "
                              "normalisation); the 48 kHz model is not supported")
    tensors = merge_weight_norm(read_safetensors(files))
    layout = ENCODEC_LAYOUTS["transformers"]
    model = encodec_model(sample_rate=int(cfg.get("sampling_rate", 24000)), channels=int(cfg.get("audio_channels", 1)),
                          ch=int(cfg.get("num_filters", 32)),
                          strides=list(cfg.get("upsampling_ratios", [8, 5, 4, 2]))[::-1],
                          res_units=int(cfg.get("num_residual_layers", 1)),
                          dilation_base=int(cfg.get("dilation_growth_rate", 2)),
                          kernel_size=int(cfg.get("kernel_size", 7)),
                          residual_kernel_size=int(cfg.get("residual_kernel_size", 3)),
                          latent_dim=int(cfg.get("hidden_size", 128)), lstm_layers=int(cfg.get("num_lstm_layers", 2)),
                          causal=bool(cfg.get("use_causal_conv", True)),
                          conv_shortcut=bool(cfg.get("use_conv_shortcut", True)),
                          levels=_levels(tensors, layout["codebook"]),
                          codebook_size=int(cfg.get("codebook_size", 1024)))
    src = Source(tensors=tensors, model=model, recipe="audio_quickstart", weights="raw",
                 ignore={"quantizer.layers.*.codebook.inited": "EnCodec's k-means-done flag (set in mmtok)"},
                 config_from=f"read from {path / 'config.json'}",
                 notes=["no discriminator in a transformers folder: the adversary starts fresh"])
    return src, lambda c: encodec_rules(c, "transformers")


def to_encodec(model, recipe):
    """mmtok's codec -> (transformers' EncodecModel holding the same weights, strictly loaded; the check of its own
    encode / decode against `model` on random audio), or MmtokError naming what EncodecModel cannot express."""
    import torch

    from mmtok.export.interop import invert_rules, load_plain, plain_state, transformers_classes

    c, q = model.cfg, model.cfg.quantizer
    want = encodec_model(sample_rate=c.sample_rate, channels=c.channels, ch=c.ch, strides=c.strides,
                         res_units=c.res_units, dilation_base=c.dilation_base, kernel_size=c.kernel_size,
                         residual_kernel_size=c.residual_kernel_size, latent_dim=c.latent_dim,
                         lstm_layers=c.bottleneck_layers, causal=c.causal, conv_shortcut=c.conv_shortcut,
                         levels=q.levels, codebook_size=q.codebook_size)
    have = c.model_dump(mode="json")
    differ = [k for k in ("activation", "bottleneck", "padding", "final_tanh") if have[k] != want[k]]
    differ += ["latent_kernel_size"] if have["latent_kernel_size"] not in (None, c.kernel_size) else []
    differ += ["decoder_ch"] if have["decoder_ch"] is not None else []
    differ += [f"quantizer.{k}" for k in ("kind", "l2_norm", "ema", "dim")
               if have["quantizer"].get(k) != want["quantizer"][k]]
    if differ:
        raise MmtokError("transformers has no class for this codec: EncodecModel needs EnCodec's architecture, and "
                         "this model differs in " + ", ".join(differ[:5]),
                         hint="--format hf writes codecs of EnCodec's (preset encodec_24k) or DAC's architecture")
    EncodecConfig, EncodecModel = transformers_classes("EncodecConfig", "EncodecModel")
    bits = math.ceil(math.log2(q.codebook_size)) * math.ceil(c.sample_rate / c.hop)  # bits/s per level, as
    # EncodecConfig.num_quantizers counts them: int(1000 * bandwidth // (frame_rate * codebook_nbits))
    hf = EncodecModel(EncodecConfig(
        sampling_rate=c.sample_rate, audio_channels=c.channels, num_filters=c.ch, num_residual_layers=c.res_units,
        upsampling_ratios=list(c.strides)[::-1], hidden_size=c.latent_dim, codebook_size=q.codebook_size,
        codebook_dim=c.latent_dim, num_lstm_layers=c.bottleneck_layers, use_causal_conv=c.causal,
        use_conv_shortcut=c.conv_shortcut, kernel_size=c.kernel_size, last_kernel_size=c.kernel_size,
        residual_kernel_size=c.residual_kernel_size, dilation_growth_rate=c.dilation_base, normalize=False,
        target_bandwidths=[(q.levels * bits + 0.5) / 1000])).eval()
    state = invert_rules(encodec_rules(c, "transformers"), plain_state(model))
    for i in range(q.levels):
        state[f"quantizer.layers.{i}.codebook.inited"] = torch.ones(1)
    with torch.no_grad():
        load_plain(hf, state)
        x = torch.rand(2, c.channels, 8 * c.hop, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
        enc = hf.encode(x)
        ids = enc.audio_codes[0].transpose(1, 2)
        own_ids = model.encode(x)
        audio = hf.decode(own_ids.transpose(1, 2)[None], enc.audio_scales).audio_values
        check = {"inputs": "2 random waveforms", "ids_equal": float((ids == own_ids).float().mean()),
                 "max_output_difference": float((audio - model.decode(own_ids)).abs().max())}
    return hf, check
