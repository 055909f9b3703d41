"""The codec family (audio): SEANet encoder / decoder around a residual VQ."""
