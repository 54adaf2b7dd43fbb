"""Manifest schema, atomic writes and validation against the files on disk."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from eamm.errors import EammError
from eamm.manifest import (
    MANIFEST_SCHEMA,
    OUTPUT_FILES,
    read_rows,
    summarize,
    validate_manifest,
    write_manifest,
)


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
        "output_dir": f"clips/{clip_id}",
        "output_files": list(OUTPUT_FILES),
    }


def make_outputs(root, clip_id: str, n: int = 3) -> None:
    folder = root / "clips" / clip_id
    folder.mkdir(parents=True)
    for name in ("frames.mp4", "audio.wav"):
        (folder / name).write_bytes(b"x")
    np.save(folder / "mfcc.npy", np.zeros((n, 28, 13), np.float32))
    np.save(folder / "landmarks.npy", np.zeros((n, 68, 2), np.float32))
    np.save(folder / "pose.npy", np.zeros((n, 7), np.float32))


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
    make_outputs(tmp_path, "train/A/A_00001")
    make_outputs(tmp_path, "train/B/B_00001", n=4)  # shapes disagree with the row
    make_outputs(tmp_path, "train/C/C_00001")  # no row
    failed = {**ok_row("train/D/D_00001"), "status": "failed", "error_code": None}
    make_outputs(tmp_path, "train/D/D_00001")
    rows = [ok_row("train/A/A_00001"), ok_row("train/B/B_00001"), ok_row("train/E/E_00001"), failed]
    path = write_manifest(rows, tmp_path / "manifest.parquet")
    problems = validate_manifest(path)
    assert "train/B/B_00001: mfcc.npy has shape (4, 28, 13), expected (3, 28, 13)" in problems
    assert any(
        p.startswith("train/E/E_00001: outputs incomplete (missing audio.wav") for p in problems
    )
    assert "train/C/C_00001: outputs on disk that no ok row accounts for" in problems
    assert "train/D/D_00001: status failed but outputs exist" in problems
    assert "train/D/D_00001: failed without an error_code" in problems
    assert not any(p.startswith("train/A/A_00001") for p in problems)


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
