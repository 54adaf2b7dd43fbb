"""Manifest schema, atomic writes and validation against the shards on disk."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from eamm.errors import EammError
from eamm.manifest import (
    MANIFEST_SCHEMA,
    OUTPUT_FILES,
    content_fingerprint,
    members,
    read_rows,
    summarize,
    validate_manifest,
    write_manifest,
)
from eamm.shards import shard_of, write_shard


def ok_row(clip_id: str, n: int = 3) -> dict:
    return {
        "clip_id": clip_id,
        "dataset": "lrw",
        "split": "train",
        "word": clip_id.split("/")[1],
        "utterance": "00001",
        "video_path": f"lipread_mp4/{clip_id}.mp4",
        "status": "ok",
        "n_frames": n,
        "output_files": list(OUTPUT_FILES),
    }


def make_outputs(root, clip_id: str, n: int = 3) -> dict:
    """Outputs of one clip packed into its shard; returns the row's shard columns."""
    folder = root / "unpacked" / clip_id
    folder.mkdir(parents=True)
    for name in ("frames.mp4", "audio.wav"):
        (folder / name).write_bytes(b"x")
    np.save(folder / "mfcc.npy", np.zeros((n, 28, 13), np.float32))
    np.save(folder / "landmarks.npy", np.zeros((n, 68, 2), np.float32))
    np.save(folder / "pose.npy", np.zeros((n, 7), np.float32))
    shard = shard_of(clip_id)
    placed = write_shard(root / shard, {clip_id: {f: folder / f for f in OUTPUT_FILES}})[clip_id]
    return {
        "shard": shard,
        "member_offsets": [placed[f][0] for f in OUTPUT_FILES],
        "member_sizes": [placed[f][1] for f in OUTPUT_FILES],
    }


def test_round_trip_uses_the_explicit_schema(tmp_path):
    path = write_manifest(
        [ok_row("train/B/B_00001"), ok_row("train/A/A_00001")], tmp_path / "m.parquet"
    )
    assert pq.read_schema(path).equals(MANIFEST_SCHEMA, check_metadata=False)
    rows = read_rows(path)
    assert [r["clip_id"] for r in rows] == ["train/A/A_00001", "train/B/B_00001"]
    assert rows[0]["level"] is None and rows[0]["output_files"] == list(OUTPUT_FILES)
    assert [p.name for p in tmp_path.iterdir()] == ["m.parquet"]


def test_failed_write_keeps_the_old_manifest(tmp_path):
    path = write_manifest([ok_row("train/A/A_00001")], tmp_path / "m.parquet")
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's conversion error type varies
        write_manifest([{**ok_row("train/B/B_00001"), "n_frames": "many"}], path)
    assert [r["clip_id"] for r in read_rows(path)] == ["train/A/A_00001"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.parquet"]


def test_validate_finds_missing_extra_and_inconsistent_outputs(tmp_path):
    a = {**ok_row("train/A/A_00001"), **make_outputs(tmp_path, "train/A/A_00001")}
    # shapes disagree with the row
    b = {**ok_row("train/B/B_00001"), **make_outputs(tmp_path, "train/B/B_00001", n=4)}
    make_outputs(tmp_path, "train/C/C_00001")  # a shard no row uses
    failed = {**ok_row("train/D/D_00001"), "status": "failed", "error_code": None}
    failed.update(make_outputs(tmp_path, "train/D/D_00001"))
    e = ok_row("train/E/E_00001")  # nothing recorded
    f = {**ok_row("train/F/F_00001"), **make_outputs(tmp_path, "train/F/F_00001")}
    f["member_offsets"] = [o + 512 for o in f["member_offsets"]]  # offsets of another shard
    (tmp_path / "shards/train/.G.tar.partial").write_bytes(b"")
    (tmp_path / ".staging/train/H/H_00001").mkdir(parents=True)
    path = write_manifest([a, b, e, f, failed], tmp_path / "manifest.parquet")
    problems = validate_manifest(path)
    assert "train/B/B_00001: mfcc.npy has shape (4, 28, 13), expected (3, 28, 13)" in problems
    assert "train/E/E_00001: outputs incomplete (no shard members recorded)" in problems
    assert any(p.startswith("train/F/F_00001: frames.mp4, audio.wav") for p in problems)
    assert "shards/train/C.tar: shard that no ok row accounts for" in problems
    assert "train/D/D_00001: status failed but outputs exist" in problems
    assert "train/D/D_00001: failed without an error_code" in problems
    assert "shards/train/.G.tar.partial: partial shard left behind" in problems
    assert ".staging: clips of an unfinished run are still unpacked" in problems
    assert not any(p.startswith("train/A/A_00001") for p in problems)
    assert (
        members(a, tmp_path)["pose.npy"].read()
        == (tmp_path / "unpacked/train/A/A_00001/pose.npy").read_bytes()
    )


def test_read_rejects_other_parquet(tmp_path):
    import pyarrow as pa

    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1]}), other)
    with pytest.raises(EammError, match="schema differs"):
        read_rows(other)


def test_summary_counts(tmp_path):
    rows = [
        ok_row("train/A/A_00001"),
        {
            **ok_row("train/A/A_00002"),
            "status": "failed",
            "error_code": "no_face",
            "n_frames": None,
        },
    ]
    info = summarize(rows)
    assert info["by_status"] == {"failed": 1, "ok": 1}
    assert info["by_group"] == {"A": 1} and info["failure_reasons"] == {"no_face": 1}


def test_content_fingerprint_ignores_timing_columns_only(tmp_path):
    rows = [ok_row("train/A/A_00001"), ok_row("train/B/B_00001")]
    timed = [{**r, "processing_seconds": 1.5, "source_mtime_ns": 7} for r in rows]
    retimed = [{**r, "processing_seconds": 2.5, "source_mtime_ns": 9} for r in rows]
    first = write_manifest(timed, tmp_path / "a.parquet")
    second = write_manifest(retimed, tmp_path / "b.parquet")
    assert first.read_bytes() != second.read_bytes()
    assert content_fingerprint(first) == content_fingerprint(second)
    changed = write_manifest([{**timed[0], "n_frames": 4}, timed[1]], tmp_path / "c.parquet")
    assert content_fingerprint(changed) != content_fingerprint(first)
