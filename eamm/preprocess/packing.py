"""Packing finished clips into tar shards, each as soon as all its clips are done.

Every shard whose clip set changed is rewritten from the staged files and the members it keeps;
the packed rows are journaled before the staged files go, so a run killed at any point resumes
(``eamm.preprocess.dataset.available`` finds moved members again). Untouched shards keep their
bytes, so DVC sees no change.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from eamm.manifest import OUTPUT_FILES, STAGING_DIR, members
from eamm.preprocess.dataset import Journal, staging_dir
from eamm.shards import SHARDS_DIR, Source, shard_of, write_shard

# the per-clip folder layout of manifest version 1, removed once a run has repacked it
LEGACY_CLIPS_DIR = "clips"


def needs_packing(shard: str, group: list[dict], held: set[str]) -> bool:
    """Whether ``shard`` must be rewritten for its ok rows ``group``: one of them is staged
    (new or redone) or lives elsewhere, or the clips it ``held`` are not exactly these."""
    return any(r.get("shard") != shard for r in group) or held != {r["clip_id"] for r in group}


def shards_to_pack(rows: list[dict], previous: Mapping[str, dict]) -> dict[str, list[dict]]:
    """Shard -> its ok rows, for every shard whose clip set or content changed in this run.

    A shard is rewritten when one of its clips is staged (new or redone) or a clip it held
    is gone (removed from the index, failed, or redone); untouched shards keep their bytes.
    """
    wanted: dict[str, list[dict]] = {}
    for row in rows:
        if row["status"] == "ok":
            wanted.setdefault(shard_of(row["clip_id"]), []).append(row)
    held: dict[str, set[str]] = {}
    for clip_id, prev in previous.items():
        if prev.get("status") == "ok" and prev.get("shard"):
            held.setdefault(prev["shard"], set()).add(clip_id)
    return {
        shard: group
        for shard, group in sorted(wanted.items())
        if needs_packing(shard, group, held.get(shard, set()))
    }


def pack_shard(out_root: Path, shard: str, rows: list[dict]) -> list[dict]:
    """Write ``shard`` from the staged files and kept members of ``rows``; return the rows
    pointing into it. Staged folders are removed only after the new shard is in place."""
    out_root = Path(out_root)
    sources: dict[str, dict[str, Source]] = {}
    for row in rows:
        if row.get("shard"):
            sources[row["clip_id"]] = dict(members(row, out_root))
        else:
            folder = staging_dir(out_root, row["clip_id"])
            sources[row["clip_id"]] = {name: folder / name for name in OUTPUT_FILES}
    placed = write_shard(out_root / shard, sources)
    packed = [
        {
            **row,
            "shard": shard,
            "output_files": list(OUTPUT_FILES),
            "member_offsets": [placed[row["clip_id"]][n][0] for n in OUTPUT_FILES],
            "member_sizes": [placed[row["clip_id"]][n][1] for n in OUTPUT_FILES],
            "member_hashes": [placed[row["clip_id"]][n][2] for n in OUTPUT_FILES],
        }
        for row in rows
    ]
    Journal(out_root).extend(packed)
    for row in rows:
        if not row.get("shard"):
            shutil.rmtree(staging_dir(out_root, row["clip_id"]), ignore_errors=True)
    return packed


def remove_stale_outputs(out_root: Path, keep_shards: set[str], recorded: set[str]) -> int:
    """Delete the shards a previous record names (``recorded``) that no ok row uses now,
    leftovers of interrupted runs and the version-1 clip folders; returns the number of shards
    removed. A ``.tar`` no record names is not this pipeline's (a user's own shards under
    ``<out>/shards``): it stays."""
    out_root = Path(out_root)
    removed = 0
    shards = out_root / SHARDS_DIR
    if shards.is_dir():
        for path in sorted(shards.rglob("*.tar")):
            name = path.relative_to(out_root).as_posix()
            if name in recorded and name not in keep_shards:
                path.unlink()
                removed += 1
        for leftover in shards.rglob(".*.partial"):
            leftover.unlink()
        for folder in sorted(shards.rglob("*"), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    shutil.rmtree(out_root / STAGING_DIR, ignore_errors=True)
    remove_legacy_clip_folders(out_root / LEGACY_CLIPS_DIR)
    return removed


def remove_legacy_clip_folders(root: Path) -> None:
    """Remove version 1's per-clip folders under ``root``: folders holding nothing but clip
    outputs, then the folders that only they made non-empty. Anything else stays: ``clips/``
    may be a user's own folder (even the raw dataset: ``--raw <out>/clips`` was deleted)."""
    if not root.is_dir() or root.is_symlink():
        return
    for folder, subfolders, files in os.walk(root, topdown=False):
        path = Path(folder)
        if not files and not subfolders:
            continue  # an empty folder we did not empty: not ours to remove
        if files and set(files) <= set(OUTPUT_FILES) and not subfolders:
            shutil.rmtree(path, ignore_errors=True)
        elif not files and not any(path.iterdir()):  # every subfolder was a clip's
            path.rmdir()
