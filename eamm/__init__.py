"""EAMM pipeline library: media I/O, preprocessing, models, training, generation, metrics.

Plain functions and classes; orchestration (Prefect) lives in ``tasks/`` and ``flows/``.
"""

__version__ = "0.1.0"
