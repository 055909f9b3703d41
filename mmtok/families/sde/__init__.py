"""Semantic discrete encoding (MUSE-VL): config (torch-free schema and presets) and model."""
