"""Task: generate one emotional talking-face video (and its neutral and comparison videos).

The library function itself, so a run without Prefect (``eamm generate`` without a server) does
exactly the task's work.
"""

from __future__ import annotations

from prefect import task

from eamm.generate import generate

generate_task = task(name="generate-video")(generate)
