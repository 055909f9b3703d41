"""mmtok: discrete tokenizers for images, audio and motion, trained, evaluated and exported."""
__version__ = "0.1.0"
