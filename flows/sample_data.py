"""Flow: generate the bundled sample dataset (MEAD and LRW layouts) from ``params.yaml``."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

import flows.local  # noqa: F401  (sets Prefect up before a flow runs)
from eamm.atomic import folder_mode, real_folder, remove_leftovers, replace_folder, write_text
from eamm.config import SampleDataParams, load_section
from eamm.folder_lock import output_lock
from eamm.sample.dataset import check_replaceable_root, plan, write_portrait
from tasks.sample_data import write_sample_clips


def _summary(records: list[dict], out: Path) -> dict:
    by_dataset = Counter(r["dataset"] for r in records)
    frames = Counter()
    for r in records:
        frames[r["dataset"]] += r["num_frames"]
    return {
        "root": str(out),
        "clips": dict(by_dataset),
        "frames": dict(frames),
        "seconds": {
            d: round(sum(r["duration_s"] for r in records if r["dataset"] == d), 3)
            for d in by_dataset
        },
        # every file written and its MD5 (as DVC hashes it): what another machine must reproduce
        "files": dict(sorted(kv for r in records for kv in r["md5"].items())),
    }


@flow(name="sample-data", task_runner=ThreadPoolTaskRunner(max_workers=2))
def sample_data_flow(
    params_path: str = "params.yaml",
    out: str = "data/sample/raw",
    summary_path: str = "data/sample/summary.json",
    batch_size: int = 3,
    portrait: str | None = None,
) -> dict:
    """Write all clips to a staging folder of this run's own, then swap it in: a failed or
    killed run leaves the previous dataset (or none), never half of one. ``out`` is replaced
    whole, so a folder holding anything else is refused; one run per ``out`` at a time."""
    params = load_section(params_path, "sample_data", SampleDataParams)
    clips = plan(params)
    out_dir = real_folder(Path(out))
    check_replaceable_root(out_dir)
    with output_lock(out_dir, "sample-data run"):
        remove_leftovers([out_dir])  # a killed run's staging folder
        staging = Path(
            tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent)
        )
        try:
            staging.chmod(folder_mode())  # the dataset's folder, as any other
            batches = [clips[i : i + batch_size] for i in range(0, len(clips), batch_size)]
            futures = write_sample_clips.map(batches, root=str(staging))
            records = [record for batch in futures.result() for record in batch]
            replace_folder(staging, out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    summary = _summary(records, out_dir)
    if portrait:
        write_portrait(portrait, params.portrait)
        summary["portrait"] = portrait
    write_text(summary_path, json.dumps(summary, indent=2) + "\n")
    rows = "\n".join(
        f"| {d} | {n} | {summary['frames'][d]} | {summary['seconds'][d]} |"
        for d, n in summary["clips"].items()
    )
    create_markdown_artifact(
        key="sample-data",
        markdown="| dataset | clips | frames | seconds |\n|---|---|---|---|\n" + rows,
        description="Bundled sample dataset",
    )
    return summary
