"""Training: data loading from the manifests, the four EAMM stages, checkpoints, logging."""
