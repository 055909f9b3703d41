"""Per-modality objectives, metric suites and sample writers shared by the families of that modality."""
