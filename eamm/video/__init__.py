"""Streaming video decode (PyAV), frame-rate normalisation and warping straight to crops."""
