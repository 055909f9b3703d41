"""The bundle's model card (README.md): what the tokens are, how good they are, how to use them, and the
exact recipe that trained them."""
from __future__ import annotations

from mmtok.export.card import plain_torch, recipe_and_files


def model_card(cfg: dict, meta: dict, evaluation: dict | None, recipe_yaml: str, info: dict, *, graphs: bool,
               name: str, onnx: bool = False) -> str:
    from mmtok.evaluation.report import metric_rows, probe_markdown

    g = "x".join(str(s) for s in meta["token_grid"])
    r = meta["input_size"][-1]
    k, dim = meta["codebook_size"], meta["codebook_dim"]
    lines = [
        f"# {name}",
        "",
        f"A discrete {meta['modality']} tokenizer ({cfg['family']}, recipe `{cfg['recipe_name']}`) exported by "
        f"mmtok {cfg['mmtok_version']}: a {r}x{r} RGB image becomes {meta['tokens_per_sample']} tokens "
        f"({g} grid, downsample {meta['downsample']}) from a codebook of {k} codes.",
        "",
        "| | |",
        "|---|---|",
        f"| input | float32 [B, 3, {r}, {r}], RGB, values in [-1, 1] (pixel / 127.5 - 1) |",
        f"| preprocessing | {meta['input']['resize']} |",
        f"| tokens | {meta['tokens_per_sample']} per image, grid {g}, row-major (raster) order, ids in [0, {k}) |",
        f"| codebook | {meta['num_codebooks']} x {k} codes of dim {dim} ({meta['quantizer']}"
        f"{', l2-normalised' if meta.get('l2_norm') else ''}) |",
        f"| weights | {cfg['weights']} (training step {cfg['step']}) |",
        f"| suggested LM tokens | `{meta['special_tokens']['begin']}` codes as "
        f"`{meta['special_tokens']['code_format']}` `{meta['special_tokens']['end']}` |",
        "",
        "## Evaluation",
        "",
    ]
    if evaluation:
        proto = evaluation.get("protocol", {})
        lines += [
            f"Reconstruction of {proto.get('num_samples')} images of `{proto.get('data')}` at "
            f"{proto.get('resolution')}px ({proto.get('crop')}), {evaluation.get('model', {}).get('weights')} "
            "weights (full protocol in eval.json).",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        lines += [f"| {label} | {value} |" for label, value in metric_rows(evaluation.get("metrics", {}))]
        if evaluation.get("probe"):
            lines += ["", "### What the tokens say about the class (probe)", ""] + probe_markdown(evaluation["probe"])
    else:
        lines.append("Not evaluated before export (run `mmtok eval MODEL --data ...`, then export again).")
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "import mmtok",
        "",
        f'tok = mmtok.load("{name}")            # verifies checksums; JSON + safetensors only',
        'ids = tok.encode(["photo.jpg"])       # LongTensor [1, ' + ", ".join(str(s) for s in meta["token_grid"]) + "]",
        "images = tok.decode(ids)              # float32 [1, 3, " + f"{r}, {r}] in [-1, 1]",
        "tok.to_pil(images)[0].save(\"recon.png\")",
        "```",
        "",
        "From a shell:",
        "",
        "```bash",
        f"mmtok encode {name} photo.jpg --out ids.npy",
        f"mmtok decode {name} ids.npy --out recon/",
        "```",
        "",
    ]
    if graphs:
        lines += plain_torch(
            "Without mmtok (plain torch, graphs made with torch.export, dynamic batch):", name,
            f"ids = encoder(images)      # images: float32 [B, 3, {r}, {r}] in [-1, 1] -> int64 [B, {g.replace('x', ', ')}]",
            "recon = decoder(ids)       # -> float32 images in [-1, 1]")
    if onnx:
        lines += [
            "With ONNX Runtime (fp32, dynamic batch; input \"images\" -> output \"ids\", input \"ids\" -> output "
            "\"images\"):",
            "",
            "```python",
            "import onnxruntime as ort",
            "",
            f'ids = ort.InferenceSession("{name}/encoder.onnx").run(None, {{"images": images}})[0]',
            f'recon = ort.InferenceSession("{name}/decoder.onnx").run(None, {{"ids": ids}})[0]',
            "```",
            "",
        ]
    lines += recipe_and_files(cfg, recipe_yaml, evaluation=evaluation, graphs=graphs, onnx=onnx,
                              tokenizer_json="token metadata")
    return "\n".join(lines)
