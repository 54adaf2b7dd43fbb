"""The project's own sample dataset: synthetic speech and expressive, moving faces warped from two
public-domain photos, in the MEAD and LRW layouts (see README, "The sample dataset")."""
