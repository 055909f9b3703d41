"""VQGAN: config (torch-free schema and presets) and model."""
