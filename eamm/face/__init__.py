"""Faces: landmark backends, the iBUG-68 mapping, alignment templates and head pose."""
