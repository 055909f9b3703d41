"""mmtok: discrete tokenizers for images, audio and motion, trained, evaluated and exported."""
__version__ = "0.1.0"


def load(path, device: str = "cpu"):
    """The exported bundle at `path` as an `mmtok.export.tokenizer.Tokenizer` (encode / decode / meta / to).

    Reads JSON and safetensors only (nothing is unpickled) and verifies every checksum first."""
    from mmtok.export.load import load as _load

    return _load(path, device=device)
