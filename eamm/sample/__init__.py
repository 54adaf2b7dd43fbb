"""The project's own tiny sample dataset: synthetic speech and an animated real face photo."""
