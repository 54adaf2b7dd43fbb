"""Tasks that write the bundled sample dataset."""

from __future__ import annotations

from prefect import task
from prefect.logging import get_run_logger

from eamm.sample.dataset import SampleClip, write_clip


@task(name="write-sample-clips")
def write_sample_clips(clips: list[SampleClip], root: str) -> list[dict]:
    """Generate a batch of clips (one task per batch keeps orchestration overhead small)."""
    logger = get_run_logger()
    records = []
    for clip in clips:
        records.append(write_clip(clip, root))
        logger.info("wrote %s (%d frames)", clip.video, clip.num_frames)
    return records
