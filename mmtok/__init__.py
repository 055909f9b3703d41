"""mmtok: discrete tokenizers for images, audio and motion, trained, evaluated and exported."""
__version__ = "0.1.0"


def load(path, device: str = "cpu", verify: bool = True):
    """The exported bundle at `path` as the tokenizer of its modality (encode / decode / meta / to; images:
    `mmtok.modalities.image.tokenizer.ImageTokenizer`).

    Reads JSON and safetensors only (nothing is unpickled). verify=True (default) checks checksums.json
    first: the weights, config.json, tokenizer.json and the graphs must match (else CheckpointError); an
    edited model card (README.md), eval.json or recipe.yaml only warns (BundleModifiedWarning). verify=False
    skips the checksum check entirely; the version check and strict weight loading still apply."""
    from mmtok.export.load import load as _load

    return _load(path, device=device, verify=verify)
