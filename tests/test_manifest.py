"""Manifest schema, atomic writes and validation against the shards on disk."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eamm.clips import load_clips
from eamm.errors import EammError
from eamm.manifest import (
    MANIFEST_SCHEMA,
    OUTPUT_FILES,
    RUN_LOG_SCHEMA,
    ManifestRow,
    content_fingerprint,
    members,
    read_manifest,
    read_rows,
    read_run_log,
    summarize,
    to_table,
    validate_manifest,
    write_manifest,
    write_manifest_parts,
    write_run_log,
)
from eamm.shards import shard_of, write_shard
from tests.conftest import ROOT


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


def test_validate_names_rows_that_would_read_the_wrong_bytes(tmp_path):
    """Hand-edited rows: member lists of unequal lengths were a bare ValueError from zip();
    a shard outside the folder, an unknown split or a second dataset were "valid" (the clip
    then dropped out of every split, or the report filed it under the other dataset)."""
    rows = []
    for name in "ABCDEF":
        clip_id = f"train/{name}/{name}_00001"
        rows.append({**ok_row(clip_id), **make_outputs(tmp_path, clip_id)})
    rows[0]["member_offsets"] = rows[0]["member_offsets"][:4]
    rows[1]["shard"] = str(tmp_path / rows[1]["shard"])  # absolute: another folder's shards
    rows[2]["shard"] = "../elsewhere/" + rows[2]["shard"]
    rows[3]["split"] = "tst"
    rows[4]["dataset"] = "mead"
    path = write_manifest(rows, tmp_path / "manifest.parquet")
    problems = validate_manifest(path)
    assert (
        "train/A/A_00001: member lists of other lengths than its 5 outputs (output_files 5, "
        "member_offsets 4, member_sizes 5, member_hashes 0)"
    ) in problems
    assert (
        f"train/B/B_00001: shard {rows[1]['shard']} is not under shards/ beside the "
        in " ".join(problems)
    )
    assert any(p.startswith("train/C/C_00001: shard ../elsewhere/") for p in problems)
    assert "train/D/D_00001: unknown split 'tst'" in problems
    assert "rows of more than one dataset (5 'lrw', 1 'mead')" in problems
    assert not any(p.startswith("train/F/F_00001") for p in problems)
    with pytest.raises(EammError) as err:  # training and evaluation read the rows the same way
        load_clips(path, ("train",))
    assert str(err.value).startswith(f"{path}: train/A/A_00001: member lists of other lengths")
    assert "(and 2 more); `eamm manifest validate" in str(err.value)


def test_a_clip_listed_twice_is_not_read_twice(tmp_path):
    """``eamm evaluate`` scored a duplicated clip twice ("clips 2" for one clip)."""
    row = {**ok_row("test/A/A_00001"), "split": "test", **make_outputs(tmp_path, "test/A/A_00001")}
    path = write_manifest([row, dict(row)], tmp_path / "manifest.parquet")
    with pytest.raises(EammError, match=r"test/A/A_00001: listed more than once; `eamm manifest"):
        load_clips(path, ("test",))


def test_read_rejects_other_parquet(tmp_path):
    import pyarrow as pa

    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1]}), other)
    with pytest.raises(
        EammError, match=r"schema differs .*: extra column 'x', column '\w+' missing"
    ):
        read_rows(other)


def test_an_added_column_is_named(tmp_path):
    """The error gave only the version numbers, the same on both sides."""
    import pyarrow as pa

    table = pq.read_table(write_manifest([], tmp_path / "m.parquet"))
    pq.write_table(table.append_column("note", pa.array([], pa.string())), tmp_path / "x.parquet")
    with pytest.raises(EammError, match=r"version \d+: extra column 'note'\); re-run"):
        read_rows(tmp_path / "x.parquet")


def test_a_column_made_nullable_and_a_missing_file_are_named(tmp_path):
    """A tool that rewrote the manifest with nullable columns gave an empty reason."""
    import pyarrow as pa

    table = pq.read_table(write_manifest([], tmp_path / "m.parquet"))
    loose = pa.schema([f.with_nullable(True) for f in table.schema], table.schema.metadata)
    pq.write_table(table.cast(loose), tmp_path / "loose.parquet")
    with pytest.raises(EammError, match=r"column 'clip_id' may hold nulls, where the schema"):
        read_rows(tmp_path / "loose.parquet")
    with pytest.raises(EammError, match=r"gone\.parquet: no manifest there \(file does not"):
        read_rows(tmp_path / "gone.parquet")


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
    # a failed row without a code (validate names it) was a TypeError sorting None
    uncoded = {**rows[1], "clip_id": "train/A/A_00003", "error_code": None}
    assert summarize([*rows, uncoded])["failure_reasons"] == {"(none)": 1, "no_face": 1}


def test_manifest_holds_content_and_the_run_log_the_timings(tmp_path):
    """Re-timed rows give the same manifest bytes; their timings go to the run log."""
    rows = [ok_row("train/A/A_00001"), ok_row("train/B/B_00001")]
    timed = [{**r, "processing_seconds": 1.5, "source_mtime_ns": 7} for r in rows]
    retimed = [{**r, "processing_seconds": 2.5, "source_mtime_ns": 9} for r in rows]
    first = write_manifest(timed, tmp_path / "a.parquet")
    second = write_manifest(retimed, tmp_path / "b.parquet")
    assert first.read_bytes() == second.read_bytes()
    changed = write_manifest([{**timed[0], "n_frames": 4}, timed[1]], tmp_path / "c.parquet")
    assert content_fingerprint(changed) != content_fingerprint(first)
    log = write_run_log(retimed, tmp_path / "run_log.parquet")
    assert read_run_log(log) == {
        r["clip_id"]: {"source_mtime_ns": 9, "processing_seconds": 2.5} for r in rows
    }
    assert read_run_log(tmp_path / "missing.parquet") == {}


def test_a_version_3_manifest_reads_as_its_content(tmp_path):
    """Version 3 kept timings in the manifest: read without them, same fingerprint."""
    rows = [ok_row("train/A/A_00001"), ok_row("train/B/B_00001")]
    current = write_manifest(rows, tmp_path / "v4.parquet")
    table = pq.read_table(current)
    table = table.append_column("source_mtime_ns", pa.array([7, 8], pa.int64()))
    table = table.append_column("processing_seconds", pa.array([1.5, 2.5]))
    pq.write_table(table, tmp_path / "v3.parquet")
    assert read_rows(tmp_path / "v3.parquet") == read_rows(current)
    assert content_fingerprint(tmp_path / "v3.parquet") == content_fingerprint(current)


# The manifest (version 4) and run log schemas as they were written out by hand before
# ``ManifestRow`` declared them: the derived schemas must write the same bytes.
_V4_FIELDS = [
    ("clip_id", pa.string(), False),
    ("dataset", pa.string(), False),
    ("split", pa.string(), False),
    ("speaker", pa.string(), True),
    ("emotion", pa.string(), True),
    ("level", pa.int16(), True),
    ("view", pa.string(), True),
    ("word", pa.string(), True),
    ("utterance", pa.string(), False),
    ("video_path", pa.string(), False),
    ("audio_path", pa.string(), True),
    ("source_bytes", pa.int64(), True),
    ("source_fingerprint", pa.string(), True),
    ("fps_in", pa.float64(), True),
    ("n_frames_in", pa.int32(), True),
    ("width", pa.int32(), True),
    ("height", pa.int32(), True),
    ("duration_s", pa.float64(), True),
    ("n_frames", pa.int32(), True),
    ("n_mfcc_windows", pa.int32(), True),
    ("audio_source", pa.string(), True),
    ("audio_video_offset_s", pa.float64(), True),
    ("mfcc_end_pad", pa.int32(), True),
    ("faces_detected", pa.int16(), True),
    ("frames_with_face", pa.int32(), True),
    ("transform", pa.list_(pa.float64()), True),
    ("landmark_backend", pa.string(), True),
    ("status", pa.string(), False),
    ("error_code", pa.string(), True),
    ("error_message", pa.string(), True),
    ("shard", pa.string(), True),
    ("output_files", pa.list_(pa.string()), True),
    ("member_offsets", pa.list_(pa.int64()), True),
    ("member_sizes", pa.list_(pa.int64()), True),
    ("member_hashes", pa.list_(pa.string()), True),
    ("param_fingerprint", pa.string(), True),
    ("code_version", pa.string(), True),
]
V4_SCHEMA = pa.schema(
    [pa.field(name, kind, nullable=nullable) for name, kind, nullable in _V4_FIELDS],
    metadata={"eamm.manifest.version": "4"},
)
V4_RUN_LOG_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("source_mtime_ns", pa.int64()),
        pa.field("processing_seconds", pa.float64()),
    ]
)


def typed_rows() -> list[ManifestRow]:
    """An ok row with every column set, a failed one and a sparse ok one, out of order."""
    full = ManifestRow(
        clip_id="M003/angry/level_2/001",
        dataset="mead",
        split="train",
        speaker="M003",
        emotion="angry",
        level=2,
        view="front",
        utterance="001",
        video_path="M003/video/front/angry/level_2/001.mp4",
        audio_path="M003/audio/angry/level_2/001.m4a",
        source_bytes=123_456_789_012,
        source_fingerprint="ab" * 16,
        fps_in=30.0,
        n_frames_in=91,
        width=1920,
        height=1080,
        duration_s=91 / 30,
        n_frames=76,
        n_mfcc_windows=76,
        audio_source="separate",
        audio_video_offset_s=-0.0125,
        mfcc_end_pad=81,
        faces_detected=1,
        frames_with_face=76,
        transform=[0.25, -0.01, 12.5, 0.01, 0.25, -3.75],
        landmark_backend="mediapipe",
        status="ok",
        shard="shards/train/M003.tar",
        output_files=list(OUTPUT_FILES),
        member_offsets=[512, 2048, 4096, 8192, 16384],
        member_sizes=[1000, 2000, 3000, 4000, 5000],
        member_hashes=[f"{i:032x}" for i in range(5)],
        param_fingerprint="cd" * 16,
        code_version="0.4.0",
        source_mtime_ns=1_700_000_000_123_456_789,
        processing_seconds=1.75,
    )
    failed = ManifestRow(
        clip_id="train/B/B_00001",
        dataset="lrw",
        split="train",
        word="B",
        utterance="00001",
        video_path="lipread_mp4/B/train/B_00001.mp4",
        source_bytes=10,
        status="failed",
        error_code="no_face",
        error_message="no face in 29 frames",
        source_mtime_ns=5,
    )
    sparse = ManifestRow(**{**ok_row("train/A/A_00001"), "transform": []})
    return [full, failed, sparse]


def test_the_typed_row_gives_todays_schemas_and_bytes(tmp_path):
    assert MANIFEST_SCHEMA.equals(V4_SCHEMA, check_metadata=True)
    assert RUN_LOG_SCHEMA.equals(V4_RUN_LOG_SCHEMA, check_metadata=True)
    rows = typed_rows()
    dicts = [r.to_dict() for r in rows]
    expected = tmp_path / "expected.parquet"
    content = [{name: d[name] for name in V4_SCHEMA.names} for d in dicts]
    pq.write_table(
        pa.Table.from_pylist(sorted(content, key=lambda d: d["clip_id"]), schema=V4_SCHEMA),
        expected,
    )
    typed = write_manifest(rows, tmp_path / "typed.parquet")
    plain = write_manifest(dicts, tmp_path / "plain.parquet")
    assert typed.read_bytes() == expected.read_bytes() == plain.read_bytes()
    assert read_rows(typed) == sorted(content, key=lambda d: d["clip_id"])

    expected_log = tmp_path / "expected_log.parquet"
    measured = [{name: d[name] for name in V4_RUN_LOG_SCHEMA.names} for d in dicts]
    pq.write_table(
        pa.Table.from_pylist(
            sorted(measured, key=lambda d: d["clip_id"]), schema=V4_RUN_LOG_SCHEMA
        ),
        expected_log,
    )
    typed_log = write_run_log(rows, tmp_path / "typed_log.parquet")
    plain_log = write_run_log(dicts, tmp_path / "plain_log.parquet")
    assert typed_log.read_bytes() == expected_log.read_bytes() == plain_log.read_bytes()


def test_a_typed_row_needs_the_required_columns_and_knows_no_others():
    with pytest.raises(TypeError):
        ManifestRow(clip_id="a", dataset="lrw", split="train", utterance="1", video_path="v")
    with pytest.raises(TypeError):
        ManifestRow(**ok_row("train/A/A_00001"), n_frame=3)
    row = ManifestRow(**ok_row("train/A/A_00001"))
    assert set(row.to_dict()) == {*MANIFEST_SCHEMA.names, *RUN_LOG_SCHEMA.names}
    assert row.level is None and row.shard is None


def test_a_spilled_run_holds_no_rows_and_writes_the_same_manifest(tmp_path):
    """A run's rows spill to an Arrow file (``RowStore(spill_dir=...)``): adding 10k rows
    leaves no Arrow memory behind (in memory they cost ~1.4 KB of RSS a row, 0.7 GB at 500k),
    the manifest is written in sorted parts with the same rows as in one piece, and one part
    gives the same bytes as ``write_manifest``/``write_run_log``."""
    from eamm.preprocess.rows import RowStore

    template = typed_rows()[0].to_dict()
    order = np.random.default_rng(0).permutation(10_000)
    rows = [{**template, "clip_id": f"M{i % 7:03d}/angry/level_2/{i:05d}"} for i in order]
    spilled, kept = RowStore(spill_dir=tmp_path / "spill"), RowStore()
    before = pa.total_allocated_bytes()
    spilled.add(rows)
    assert spilled.count == 10_000 and len(list((tmp_path / "spill").glob("*.arrow"))) == 1
    assert pa.total_allocated_bytes() - before < 64 * 1024  # the batches went to disk
    kept.add(rows)
    assert pa.total_allocated_bytes() - before > 10_000 * 300  # what it would hold

    parts = list(spilled.sorted_parts("clip_id", rows=3_000))
    assert [p.num_rows for p in parts] == [3_000, 3_000, 3_000, 1_000]
    whole = kept.table().sort_by("clip_id")
    assert pa.concat_tables(parts).equals(whole)
    assert spilled.table(["clip_id"])["clip_id"].to_pylist() == [r["clip_id"] for r in rows]

    write_manifest_parts(parts, tmp_path / "parts.parquet", tmp_path / "parts_log.parquet")
    assert read_manifest(tmp_path / "parts.parquet").equals(to_table(whole))
    assert pq.ParquetFile(tmp_path / "parts.parquet").num_row_groups == 4
    write_manifest_parts(
        spilled.sorted_parts("clip_id"), tmp_path / "one.parquet", tmp_path / "one_log.parquet"
    )
    assert (tmp_path / "one.parquet").read_bytes() == write_manifest(
        rows, tmp_path / "m.parquet"
    ).read_bytes()
    assert (tmp_path / "one_log.parquet").read_bytes() == write_run_log(
        rows, tmp_path / "l.parquet"
    ).read_bytes()
    spilled.discard()
    assert not list((tmp_path / "spill").iterdir())


_READ_PEAKS = """
import sys
from pathlib import Path
import pyarrow as pa
from tests.test_manifest import typed_rows
from eamm.preprocess.rows import RowStore
pool = pa.default_memory_pool()
template = typed_rows()[0].to_dict()
store = RowStore(spill_dir=Path(sys.argv[1]))
store.add({**template, "clip_id": f"M{i % 7:03d}/angry/level_2/{i:05d}"} for i in range(40_000))
store.table(["clip_id"])
keys = pool.max_memory()
for _ in store.sorted_parts("clip_id", rows=4096):
    pass
print(next(Path(sys.argv[1]).glob("*.arrow")).stat().st_size, keys, pool.max_memory())
"""


def test_reading_a_spilled_store_never_holds_the_whole_file(tmp_path):
    """Arrow's IPC reader copies whole batch bodies, even from a memory map, so reading a
    column with ``read_all`` held the whole spill file (about 370 MB at 500k clips) at the
    end of a run. The store reads a batch at a time: its clip_ids and its sorted parts peak at
    a few batches (measured in a fresh process: Arrow's peak is per process)."""
    out = subprocess.run(
        [sys.executable, "-c", _READ_PEAKS, str(tmp_path / "spill")],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.split()
    size, keys_peak, parts_peak = map(int, out)
    assert size > 25 * 2**20
    assert keys_peak < size / 4  # was the whole file
    assert parts_peak < size / 2


def test_test_clips_too_short_to_score_are_said_not_dropped(tmp_path):
    """``preprocess.min_frames: 1`` keeps 1-frame clips; the evaluation left them out without
    a word, and with only such clips said there was no ok clip in the split."""
    from eamm.config import EvaluateParams
    from eamm.evaluate import select_clips, short_clips_note

    rows = [
        {**ok_row(c, n), "split": "test", **make_outputs(tmp_path, c, n)}
        for c, n in (("test/A/A_00001", 1), ("test/B/B_00001", 3))
    ]
    path = write_manifest(rows, tmp_path / "manifest.parquet")
    assert [c.clip_id for c in select_clips(path, EvaluateParams())] == ["test/B/B_00001"]
    assert short_clips_note(path, "test") == (
        f"1 ok 'test' clip(s) of {path} have fewer than 2 frames and are not scored "
        "(test/A/A_00001)"
    )
    only = write_manifest(rows[:1], tmp_path / "only.parquet")
    with pytest.raises(EammError, match=r"no ok clips in split 'test' .*; 1 ok 'test' clip\(s\)"):
        select_clips(only, EvaluateParams())


def test_the_report_says_capped_only_where_a_cap_cut_and_names_own_sources(tmp_path):
    """`max_clips` 1000 over a 2-clip split was reported "Capped for a quick check ... fewer
    clips"; a speaker without a neutral clip took its own first frame (an easier source,
    already showing the emotion) without a word, and a clip without another of its speaker
    and emotion its own video as the emotion source (a real MEAD download's test speakers:
    all 5 emotional clips of a 12-clip evaluation)."""
    from eamm.config import EvaluateParams
    from eamm.evaluate import cap_cuts, source_notes

    rows = []
    for clip_id, emotion in (
        ("M1/front/happy/level_1/001", "happy"),
        ("M1/front/sad/level_1/001", "sad"),
    ):
        row = {**ok_row(clip_id), "dataset": "mead", "split": "test", "word": None}
        row |= {"speaker": "M1", "emotion": emotion, **make_outputs(tmp_path, clip_id)}
        rows.append(row)
    path = write_manifest(rows, tmp_path / "manifest.parquet")
    assert not cap_cuts(path, EvaluateParams(max_clips=1000))
    assert cap_cuts(path, EvaluateParams(max_clips=1))
    assert not cap_cuts(path, EvaluateParams())  # no cap at all
    frame, video = source_notes(path, EvaluateParams())
    assert frame.startswith(f"2 scored clip(s) of {path} are of speakers without a neutral clip")
    assert video == (
        f"2 scored clip(s) of {path} have no other clip of their speaker and emotion: their own "
        "video is the emotion source, which shows the emotion variant its answer "
        "(M1/front/happy/level_1/001, M1/front/sad/level_1/001)"
    )
    own = EvaluateParams(protocols={"ours": {"source_frame": "own"}})
    assert source_notes(path, own) == [video]


def test_an_evaluation_of_checkpoints_trained_on_other_manifests_says_so(tmp_path):
    """A models/ folder from another clone, or a changed split: a speaker scored as held out
    had been a training speaker of every stage, and the report said nothing. The checkpoint's
    recorded data fingerprint is recomputed on the manifests scored."""
    from eamm.checkpoint import learned_from, save_checkpoint, trained_on_other_data
    from eamm.evaluate import generation_notes
    from eamm.stages import checkpoint_path

    data, models = tmp_path / "data", tmp_path / "models"
    path = data / "lrw" / "processed" / "manifest.parquet"
    path.parent.mkdir(parents=True)
    write_manifest([ok_row("train/ABOUT/ABOUT_00001")], path)
    upstream = {"train_fomm": "0" * 32}
    state = {
        "stage": "train_sync_expert",
        "step": 1,
        "params": {"train_sync_expert": {"datasets": ["lrw"], "steps": 1}},
        "manifest_fingerprint": learned_from([path], upstream.values()),
        "upstream": upstream,
    }
    assert not trained_on_other_data(state, "train_sync_expert", data)
    checkpoint = save_checkpoint(state, checkpoint_path(models, "train_sync_expert"))
    assert generation_notes(models, data)[2:] == []  # stages 2 and 3 missing: notes 0 and 1
    moved = {**ok_row("train/ABOUT/ABOUT_00001"), "split": "test"}
    write_manifest([moved], path)  # its training clip is a test clip now
    assert trained_on_other_data(state, "train_sync_expert", data)
    assert generation_notes(models, data)[2:] == [
        f"{checkpoint} was trained on other manifests than {data}'s (their content differs): "
        "clips scored as held out may have been its training clips"
    ]
    imported = {**state, "manifest_fingerprint": "eamm-release", "params": {}}
    assert not trained_on_other_data(imported, "train_sync_expert", data)
