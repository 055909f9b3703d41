"""TokenFlow: a semantic and a pixel codebook with one shared index (config, dual codebook, model)."""
