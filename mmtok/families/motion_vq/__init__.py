"""motion_vq: T2M-GPT's motion VQ-VAE and MoMask's residual variant (config, model)."""
