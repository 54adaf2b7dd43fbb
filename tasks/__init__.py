"""Prefect tasks: thin wrappers around ``eamm`` library calls (retries, logging, batching)."""
