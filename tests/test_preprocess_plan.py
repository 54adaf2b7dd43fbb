"""The preprocessing plan without Prefect (``eamm.preprocess.plan``): shards planned in order
and packed as soon as their clips are back, reuse on a re-run, rows held as Arrow.

Real clips (the sample generator's LRW clip under six ids in three shards), real processing
(mediapipe, x264), real shards; the batches run in this process."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pytest

from eamm.config import PreprocessParams
from eamm.datasets.base import ClipEntry, DatasetIndex
from eamm.datasets.index_io import write_index
from eamm.errors import EammError
from eamm.face.landmarks import FaceModels, MediapipeLandmarks
from eamm.manifest import MANIFEST_NAME, read_manifest, read_rows, validate_manifest
from eamm.preprocess.batch import process_batch
from eamm.preprocess.dataset import JOURNAL_DIR
from eamm.preprocess.packing import pack_shard
from eamm.preprocess.plan import PreprocessRun, run_serially
from eamm.preprocess.previous import _journal_rows, load_previous
from eamm.preprocess.rows import RowStore
from eamm.shards import shard_of

PARAMS = PreprocessParams(crop_size=64)
# three shards (split/word) of two clips each
IDS = [
    f"{split}/{word}/{word}_{n:05d}"
    for split, word in [("train", "ABOUT"), ("train", "WORLD"), ("val", "ABOUT")]
    for n in (1, 2)
]


@pytest.fixture(scope="module")
def models():
    models = FaceModels.from_params(PARAMS.landmarks)
    yield models, MediapipeLandmarks()
    models.close()


def raw_tree(root: Path, clip: Path, ids: list[str]) -> Path:
    raw = root / "raw"
    for clip_id in ids:
        split, word, name = clip_id.split("/")
        target = raw / "lipread_mp4" / word / split / f"{name}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, target)
    return raw


def lrw_entry(clip_id: str, video: str | None = None) -> ClipEntry:
    """The LRW index entry of ``clip_id`` (``split/WORD/name``), its video where LRW keeps it
    unless ``video`` names another."""
    split, word, name = clip_id.split("/")
    video = video or f"lipread_mp4/{word}/{split}/{name}.mp4"
    return ClipEntry(clip_id, "lrw", split, None, None, None, None, word, name, video, None)


def index_of(raw: Path, ids: list[str], path: Path, changes: dict[str, dict] | None = None) -> Path:
    """An LRW index of ``ids`` under ``raw``; ``changes``: fields to set per clip id."""
    entries = []
    for clip_id in sorted(ids):
        entry = lrw_entry(clip_id)
        entries.append(dataclasses.replace(entry, **(changes or {}).get(clip_id, {})))
    write_index(DatasetIndex("lrw", str(raw), entries, []), path)
    return path


def drive(run: PreprocessRun, models) -> list[tuple[str, list[str]]]:
    """Run the plan in this process, recording after each batch which shards became ready."""
    events = []
    for batch in run.work():
        args = (run.raw_root, run.out_root, run.params, run.param_fp, batch.previous)
        run.done(batch, process_batch(batch.entries, *args, *models))
        ready = run.ready_packs()
        events.append((shard_of(batch.entries[0].clip_id), [job.shard for job in ready]))
        for job in ready:
            run.packed(job, pack_shard(run.out_root, job.shard, job.rows))
    assert run.ready_packs() == []
    return events


def test_shards_pack_as_they_complete_and_a_rerun_redoes_nothing(tmp_path, sample_lrw_clip, models):
    raw = raw_tree(tmp_path, sample_lrw_clip, IDS)
    index = index_of(raw, IDS, tmp_path / "index.parquet")
    out = tmp_path / "processed"
    run = PreprocessRun(out, index, PARAMS, batch_size=1)
    events = drive(run, models)
    summary = run.finish()
    # one clip per batch, in shard order; each shard is packed right after its second clip,
    # while the next shard has not started
    shards = sorted({shard_of(c) for c in IDS})
    assert events == [
        (shards[0], []),
        (shards[0], [shards[0]]),
        (shards[1], []),
        (shards[1], [shards[1]]),
        (shards[2], []),
        (shards[2], [shards[2]]),
    ]
    assert summary["by_status"] == {"ok": 6}
    assert (summary["processed"], summary["reused"], summary["shards_written"]) == (6, 0, 3)
    assert validate_manifest(out / MANIFEST_NAME) == []
    assert not (out / JOURNAL_DIR).exists()
    manifest = (out / MANIFEST_NAME).read_bytes()
    tars = {p: p.read_bytes() for p in out.rglob("*.tar")}

    again = PreprocessRun(out, index, PARAMS, batch_size=1)
    assert list(again.work()) == []
    summary = again.finish()
    assert (summary["processed"], summary["reused"], summary["shards_written"]) == (0, 6, 0)
    assert (out / MANIFEST_NAME).read_bytes() == manifest
    assert {p: p.read_bytes() for p in out.rglob("*.tar")} == tars

    # a clip gone from the index: only its shard is rewritten, nothing is processed
    fewer = index_of(raw, IDS[1:], tmp_path / "fewer.parquet")
    summary = run_serially(PreprocessRun(out, fewer, PARAMS, batch_size=4), *models)
    assert (summary["processed"], summary["reused"], summary["shards_written"]) == (0, 5, 1)
    assert [r["clip_id"] for r in read_rows(out / MANIFEST_NAME)] == sorted(IDS[1:])
    assert {p for p in out.rglob("*.tar") if p.read_bytes() != tars.get(p)} == {
        out / shard_of(IDS[0])
    }
    assert summary["redone_other_params"] == 0
    # other params: every clip is planned again, and the run says why (the count said nothing)
    other = PreprocessRun(out, fewer, PreprocessParams(crop_size=64, crf=12), batch_size=8)
    assert sum(len(b.entries) for b in other.work()) == other.other_params == 5


def test_a_rerun_takes_the_indexs_labels_and_redoes_a_clip_whose_sources_changed(
    tmp_path, sample_lrw_clip, models
):
    """A new split file moves a speaker to the test split: the kept clips carry the new split
    (training reads it from the manifest), nothing is redone. An audio file named for a clip
    where there was none changes its outputs: that clip is redone."""
    raw = raw_tree(tmp_path, sample_lrw_clip, IDS[:2])
    out = tmp_path / "processed"
    run_serially(
        PreprocessRun(out, index_of(raw, IDS[:2], tmp_path / "a.parquet"), PARAMS, 2), *models
    )
    tars = {p: p.read_bytes() for p in out.rglob("*.tar")}

    moved = index_of(raw, IDS[:2], tmp_path / "b.parquet", {IDS[0]: {"split": "test"}})
    summary = run_serially(PreprocessRun(out, moved, PARAMS, batch_size=2), *models)
    assert (summary["processed"], summary["reused"], summary["shards_written"]) == (0, 2, 0)
    splits = {r["clip_id"]: r["split"] for r in read_rows(out / MANIFEST_NAME)}
    assert splits == {IDS[0]: "test", IDS[1]: "train"}
    assert {p: p.read_bytes() for p in out.rglob("*.tar")} == tars

    audio = raw / "lipread_mp4" / "ABOUT" / "train" / "ABOUT_00001.m4a"
    shutil.copyfile(raw / "lipread_mp4" / "ABOUT" / "train" / "ABOUT_00001.mp4", audio)
    named = {IDS[0]: {"split": "test", "audio": audio.relative_to(raw).as_posix()}}
    summary = run_serially(
        PreprocessRun(out, index_of(raw, IDS[:2], tmp_path / "c.parquet", named), PARAMS, 2),
        *models,
    )
    assert (summary["processed"], summary["reused"]) == (1, 1)
    rows = {r["clip_id"]: r for r in read_rows(out / MANIFEST_NAME)}
    assert rows[IDS[0]]["audio_path"] == named[IDS[0]]["audio"]
    assert rows[IDS[0]]["audio_source"] == "file" and rows[IDS[0]]["split"] == "test"


def test_an_index_that_would_wipe_the_dataset_is_refused(tmp_path, sample_lrw_clip, models):
    """Another dataset's index, an index with no clip (an empty or wrong raw folder), an index
    whose raw folder is gone (an unmounted disk): one line each, the processed clips kept."""
    raw = raw_tree(tmp_path, sample_lrw_clip, IDS[:1])
    index = index_of(raw, IDS[:1], tmp_path / "index.parquet")
    out = tmp_path / "processed"
    run_serially(PreprocessRun(out, index, PARAMS, batch_size=1), *models)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    with pytest.raises(EammError, match=r"index\.parquet: an index of lrw, not mead$"):
        PreprocessRun(out, index, PARAMS, batch_size=1, dataset="mead")
    empty = index_of(raw, [], tmp_path / "empty.parquet")
    with pytest.raises(EammError, match=r"empty\.parquet: no clip indexed under .*raw"):
        PreprocessRun(out, empty, PARAMS, batch_size=1, dataset="lrw")
    raw.rename(tmp_path / "unmounted")
    with pytest.raises(EammError, match=r"raw: the raw folder of .* does not exist"):
        PreprocessRun(out, index, PARAMS, batch_size=1, dataset="lrw")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_batches_may_span_shards(tmp_path, sample_lrw_clip, models):
    """Batches of 4 over shards of 2: each shard still packs once, with all its clips."""
    raw = raw_tree(tmp_path, sample_lrw_clip, IDS)
    index = index_of(raw, IDS, tmp_path / "index.parquet")
    out = tmp_path / "processed"
    run = PreprocessRun(out, index, PARAMS, batch_size=4)
    planned = PreprocessRun(out, index, PARAMS, batch_size=4).work()
    assert [len(b.entries) for b in planned] == [4, 2]
    summary = run_serially(run, *models)
    assert (summary["processed"], summary["shards_written"], summary["shards"]) == (6, 3, 3)
    assert validate_manifest(out / MANIFEST_NAME) == []


def test_journal_lines_supersede_the_manifest(tmp_path, sample_lrw_clip, models):
    """A run killed after the manifest was written: its journal lines are the latest records."""
    raw = raw_tree(tmp_path, sample_lrw_clip, IDS[:2])
    index = index_of(raw, IDS[:2], tmp_path / "index.parquet")
    out = tmp_path / "processed"
    run_serially(PreprocessRun(out, index, PARAMS, batch_size=2), *models)
    row = next(r for r in read_rows(out / MANIFEST_NAME) if r["clip_id"] == IDS[0])
    journal = out / JOURNAL_DIR
    journal.mkdir()
    newer = {**row, "status": "failed", "error_code": "no_face", "shard": None}
    (journal / "1-1.jsonl").write_text(json.dumps(newer) + "\n" + '{"clip_id": "cut sh')
    previous = load_previous(out)
    assert len(previous) == 2
    assert previous.get(IDS[0])["status"] == "failed"
    assert previous.get(IDS[1])["status"] == "ok"
    assert previous.held(shard_of(IDS[0])) == {IDS[1]}


def test_rows_are_held_in_a_few_hundred_bytes(tmp_path, sample_lrw_clip, models):
    """What keeps a 500k-clip run's memory flat: a finished row costs well under 1 KB as
    Arrow (about 4 KB as a Python dict)."""
    raw = raw_tree(tmp_path, sample_lrw_clip, IDS[:1])
    index = index_of(raw, IDS[:1], tmp_path / "index.parquet")
    out = tmp_path / "processed"
    run_serially(PreprocessRun(out, index, PARAMS, batch_size=1), *models)
    row = read_rows(out / MANIFEST_NAME)[0]
    store = RowStore()
    store.add({**row, "clip_id": f"train/ABOUT/ABOUT_{i:05d}"} for i in range(10_000))
    table = store.table()
    assert table.num_rows == 10_000 and pc.sum(pc.equal(table["status"], "ok")).as_py() == 10_000
    assert table.nbytes / table.num_rows < 1000
    assert read_manifest(out / MANIFEST_NAME).num_rows == 1


def test_journal_extend_writes_every_line_with_one_fsync(tmp_path, monkeypatch):
    """A shard's packed rows go to the journal in one write and one fsync (a fsync per row cost
    7 % of the flow's CPU at 20k clips), and read back as the rows, the last one winning."""
    import eamm.preprocess.dataset as dataset

    calls = []
    real_fsync = dataset.os.fsync
    monkeypatch.setattr(dataset.os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
    journal = dataset.Journal(tmp_path)
    rows = [{"clip_id": f"c{i}", "status": "ok"} for i in range(5)]
    journal.extend(rows)
    journal.append({"clip_id": "c1", "status": "failed"})
    assert len(calls) == 2
    table = _journal_rows(tmp_path / dataset.JOURNAL_DIR)
    assert table["clip_id"].to_pylist() == ["c0", "c2", "c3", "c4", "c1"]
    assert table["status"].to_pylist()[-1] == "failed"


def test_shard_groups_take_each_shard_in_order_with_its_clips_sorted(monkeypatch):
    """The plan walks the index shard by shard (sorted), each shard's clips by clip_id,
    whatever the index order, without a sorted copy of the index; chunk edges do not matter."""
    import numpy as np
    import pyarrow as pa

    from eamm.datasets.index_io import INDEX_SCHEMA
    from eamm.preprocess import plan

    ids = [
        f"{s}/{w}/{w}_{n:05d}"
        for s in ("val", "train")
        for w in ("ZED", "ABOUT")
        for n in (3, 1, 2)
    ]
    order = np.random.default_rng(1).permutation(len(ids))
    columns = {f.name: [None] * len(ids) for f in INDEX_SCHEMA}
    columns.update(
        clip_id=[ids[i] for i in order],
        dataset=["lrw"] * len(ids),
        split=[ids[i].split("/")[0] for i in order],
        utterance=["u"] * len(ids),
        video=["v.mp4"] * len(ids),
    )
    index = pa.Table.from_pydict(columns, schema=INDEX_SCHEMA)
    expected = sorted({shard_of(c) for c in ids})
    for chunk in (5, plan.SHARD_CHUNK):
        monkeypatch.setattr(plan, "SHARD_CHUNK", chunk)
        groups = list(plan.shard_groups(index))
        assert [s for s, _ in groups] == expected
        for shard, group in groups:
            assert group["clip_id"].to_pylist() == sorted(c for c in ids if shard_of(c) == shard)
    assert list(plan.shard_groups(index.slice(0, 0))) == []
    assert [s for s, _ in plan.shard_groups(index.slice(0, 1))] == [
        shard_of(index["clip_id"][0].as_py())
    ]


def test_previous_rows_read_the_manifest_a_row_group_at_a_time(tmp_path, monkeypatch):
    """A re-run looks records up without holding the manifest: walking the shards in order
    decodes each row group once, and every record comes back as the whole row (run log
    columns joined); journal lines win, absent or overlong ids are not found."""
    import numpy as np
    import pyarrow.parquet as pq

    from eamm.manifest import ROW_SCHEMA, RUN_LOG_NAME, read_run_log, write_manifest_parts
    from eamm.preprocess.rows import RowStore
    from tests.test_manifest import typed_rows

    template = typed_rows()[0].to_dict()
    rows = []
    for i in np.random.default_rng(1).permutation(60):
        speaker = f"M{i % 4:03d}"
        rows.append(
            {
                **template,
                "clip_id": f"{speaker}/front/angry/level_2/{i:03d}",
                "shard": f"shards/{speaker}/front.tar",
                "status": "failed" if i % 10 == 3 else "ok",
                "source_mtime_ns": 1_000 + int(i),
            }
        )
    store = RowStore()
    store.add(rows)
    out = tmp_path / "processed"
    out.mkdir()
    write_manifest_parts(
        store.sorted_parts("clip_id", rows=16), out / MANIFEST_NAME, out / RUN_LOG_NAME
    )
    journal = out / JOURNAL_DIR
    journal.mkdir()
    redone = {**rows[0], "status": "failed", "shard": None}
    added = {**rows[1], "clip_id": "M009/front/happy/level_1/001", "shard": "shards/M009/front.tar"}
    (journal / "1-1.jsonl").write_text(json.dumps(redone) + "\n" + json.dumps(added) + "\n")

    reads = []
    real = pq.ParquetFile.read_row_group

    def spied(self, i, **kwargs):
        reads.append(i)
        return real(self, i, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spied)
    previous = load_previous(out)  # the manifest's ids, shards and statuses, and the run log
    assert sorted(reads) == [0, 0, 1, 1, 2, 2, 3, 3] and len(previous) == 61
    reads.clear()
    by_shard: dict[str, list[str]] = {}
    for row in sorted(rows, key=lambda r: r["clip_id"]):
        by_shard.setdefault(row["shard"], []).append(row["clip_id"])
    found = {}
    for shard in sorted(by_shard):
        found.update(previous.rows(by_shard[shard]))
    assert reads == [0, 1, 2, 3]  # each row group decoded once

    timings = read_run_log(out / RUN_LOG_NAME)
    for row in rows[1:]:
        expected = {name: row.get(name) for name in ROW_SCHEMA.names}
        assert found[row["clip_id"]] == expected | timings[row["clip_id"]]
    assert found[rows[0]["clip_id"]]["status"] == "failed"  # the journal's line
    assert previous.get(added["clip_id"])["shard"] == "shards/M009/front.tar"
    assert previous.rows(["M000/nope", rows[2]["clip_id"] + "/longer than any id"]) == {}
    assert rows[2]["clip_id"] in previous and "M000/nope" not in previous
    for shard in by_shard:
        ok = {r["clip_id"] for r in rows[1:] if r["shard"] == shard and r["status"] == "ok"}
        assert previous.held(shard) == ok, shard
    assert previous.held("shards/M009/front.tar") == {added["clip_id"]}
    assert previous.held("shards/none.tar") == set()


def test_the_param_fingerprint_keys_files_on_content_not_place(tmp_path):
    """A template or FAN weights folder moved elsewhere keeps the fingerprint (moving one redid
    every clip, then restarted every training stage on the same bytes); FAN's folder counts
    only for the ``fan`` backend; other content changes it; the default is the old value."""
    from eamm.face.landmarks import FAN_FILES
    from eamm.face.template import DEFAULT_TEMPLATE
    from eamm.preprocess.dataset import param_fingerprint

    def fingerprint(template: Path | str = "default", backend="mediapipe", fan=None) -> str:
        landmarks = {"backend": backend, "fan_weights_dir": None if fan is None else str(fan)}
        return param_fingerprint(PreprocessParams(template=str(template), landmarks=landmarks))

    assert fingerprint() == "a59f460bc5624a512c78c1515f8a9b8b"  # every committed manifest's
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(DEFAULT_TEMPLATE, tmp_path / name / "t.npy")
        (tmp_path / name / "fan" / "checkpoints").mkdir(parents=True)
        (tmp_path / name / "fan" / "checkpoints" / FAN_FILES[0]).write_bytes(b"fan")
    a, b = tmp_path / "a", tmp_path / "b"
    assert fingerprint(a / "t.npy") == fingerprint(b / "t.npy")
    assert fingerprint(fan=a / "fan") == fingerprint(fan=b / "fan") == fingerprint()
    assert fingerprint(backend="fan", fan=a / "fan") == fingerprint(backend="fan", fan=b / "fan")
    (b / "fan" / "checkpoints" / "resnet50.pth").write_bytes(b"a torch hub download")
    assert fingerprint(backend="fan", fan=a / "fan") == fingerprint(backend="fan", fan=b / "fan")
    (b / "fan" / "checkpoints" / FAN_FILES[0]).write_bytes(b"other")
    assert fingerprint(backend="fan", fan=a / "fan") != fingerprint(backend="fan", fan=b / "fan")
    (b / "t.npy").write_bytes((b / "t.npy").read_bytes()[:-4] + b"\0\0\0\1")
    assert fingerprint(a / "t.npy") != fingerprint(b / "t.npy")


def test_a_leaving_run_stops_its_batches_before_the_next_clip(tmp_path):
    """A cancelled run asks its batches to stop (``request_stop``) and waits for them before
    its folder lock goes: a batch returns before its next clip. (A SIGTERM'd CLI run wrote
    journal lines 2.5 s after its lock was gone; now the lock goes within 20 ms of the last.)"""
    from eamm.preprocess.batch import process_batch, request_stop

    entries = [lrw_entry(f"test/ABOUT/ABOUT_0000{i}", "x.mp4") for i in range(3)]
    request_stop(tmp_path)
    try:
        assert (
            process_batch(entries, tmp_path, tmp_path, PreprocessParams(), "", {}, None, None) == []
        )
    finally:
        request_stop(tmp_path, stop=False)
    assert not any((tmp_path / JOURNAL_DIR).iterdir())  # no clip journaled


def test_a_stop_reaches_batches_in_other_processes(tmp_path):
    """A process or Dask worker's batch ran to its end after the run was cancelled (the stop
    was a set in the flow's process): it now reads the folder's marker too."""
    import subprocess
    import sys

    from eamm.preprocess.batch import request_stop

    probe = [
        sys.executable,
        "-c",
        "import sys; from eamm.preprocess.batch import stop_requested as s; print(s(sys.argv[1]))",
        str(tmp_path),
    ]

    def seen() -> str:
        return subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()

    request_stop(tmp_path)
    try:
        assert seen() == "True"
    finally:
        request_stop(tmp_path, stop=False)
    assert seen() == "False" and list(tmp_path.iterdir()) == []


def test_a_raw_file_gone_since_indexing_is_a_missing_file_not_unreadable(tmp_path):
    """A clip whose raw video vanished was recorded ``unreadable_video``: it names the file
    and the reason, and now a code of its own."""
    from eamm.preprocess.dataset import process_entry

    entry = lrw_entry("test/ABOUT/ABOUT_00001", "gone.mp4")
    row, reused = process_entry(entry, tmp_path, tmp_path / "out", PARAMS, "", None, None, None)
    assert (row["status"], row["error_code"], reused) == ("failed", "missing_file", False)
    assert row["error_message"] == f"{tmp_path / 'gone.mp4'}: file does not exist"
