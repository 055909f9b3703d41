"""The `var` family: VAR's multi-scale residual VQ-VAE (Tian et al. 2024, "next-scale prediction")."""
