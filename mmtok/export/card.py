"""The parts every bundle's model card (README.md) shares; each modality's card (`Modality.card`) writes the rest:
what the tokens are, their measured quality and how to use them."""
from __future__ import annotations


def plain_torch(intro: str, name: str, encode: str, decode: str) -> list[str]:
    """Markdown lines: using the bundle's torch.export graphs without mmtok (`encode` / `decode`: the two commented
    calls, as code lines)."""
    return [intro, "", "```python", "import torch", "",
            f'encoder = torch.export.load("{name}/encoder.pt2").module()',
            f'decoder = torch.export.load("{name}/decoder.pt2").module()', encode, decode, "```", ""]


def recipe_and_files(cfg: dict, recipe_yaml: str, *, evaluation: dict | None, graphs: bool, onnx: bool,
                     tokenizer_json: str, weights_keys: str = "") -> list[str]:
    """Markdown lines: loading the weights alone, the training recipe and the bundle's files. `tokenizer_json` says
    what tokenizer.json holds; `weights_keys` adds to the description of the weights' keys."""
    src = cfg.get("imported")
    imported = [f"Imported by `mmtok import {src['format']}` from `{src['file']}` (sha256 {src['sha256']}); "
                f"configuration {src['config']}." + "".join(f" {n}" for n in src.get("notes", [])), ""] if src else []
    return imported + [
        "The weights alone: `safetensors.torch.load_file(\"model.safetensors\")` (keys of mmtok's "
        f"`{cfg['family']}` module{weights_keys}; config.json holds its constructor arguments).", "",
        "## Training recipe", "", "```yaml", recipe_yaml.rstrip(), "```", "",
        "## Files", "",
        f"config.json (model configuration, versions), model.safetensors (weights), tokenizer.json ({tokenizer_json}), "
        "recipe.yaml (the recipe above)" + (", eval.json (evaluation)" if evaluation else "")
        + (", encoder.pt2 / decoder.pt2 (torch.export graphs)" if graphs else "")
        + (", encoder.onnx / decoder.onnx (ONNX graphs)" if onnx else "")
        + (", adversary.safetensors (the release's discriminator, taken by `init.path` when fine-tuning)"
           if src and src.get("adversary") else "")
        + ", checksums.json (sha256 of every file; checked by mmtok.load).", "",
    ]
