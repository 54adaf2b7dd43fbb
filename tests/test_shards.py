"""Tar shards: deterministic bytes, offsets that readers trust, atomic rewrites, recovery."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from eamm.clips import Clip
from eamm.manifest import OUTPUT_FILES, members
from eamm.preprocess.dataset import available, staging_dir
from eamm.preprocess.packing import pack_shard, shards_to_pack
from eamm.shards import Member, npy_memmap, shard_of, unmatched, write_shard


def stage_clip(root, clip_id: str, n: int = 5, seed: int = 0) -> dict:
    """A finished clip in the staging folder and its journal-style row (not yet packed)."""
    folder = staging_dir(root, clip_id)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    (folder / "frames.mp4").write_bytes(rng.bytes(1000 + seed))
    (folder / "audio.wav").write_bytes(rng.bytes(700))
    np.save(folder / "mfcc.npy", rng.standard_normal((n, 28, 13)).astype(np.float32))
    np.save(folder / "landmarks.npy", rng.standard_normal((n, 68, 2)).astype(np.float32))
    np.save(folder / "pose.npy", rng.standard_normal((n, 7)).astype(np.float32))
    return {"clip_id": clip_id, "status": "ok", "n_frames": n, "output_files": list(OUTPUT_FILES)}


def test_shard_names_follow_dataset_groups():
    assert shard_of("train/ABOUT/ABOUT_00001") == "shards/train/ABOUT.tar"
    assert shard_of("M003/front/angry/level_1/001") == "shards/M003/front.tar"


def test_packed_members_read_back_and_untar_to_clip_folders(tmp_path):
    rows = [stage_clip(tmp_path, f"train/ABOUT/ABOUT_0000{k}", seed=k) for k in (2, 1)]
    expected = {
        r["clip_id"]: {
            f: (staging_dir(tmp_path, r["clip_id"]) / f).read_bytes() for f in OUTPUT_FILES
        }
        for r in rows
    }
    plan = shards_to_pack(rows, {})
    assert list(plan) == ["shards/train/ABOUT.tar"]
    packed = pack_shard(tmp_path, "shards/train/ABOUT.tar", plan["shards/train/ABOUT.tar"])
    assert not staging_dir(tmp_path, rows[0]["clip_id"]).exists()
    for row in packed:
        clip = Clip(row["clip_id"], members(row, tmp_path), row["n_frames"], None, None, "lrw")
        for name in OUTPUT_FILES:
            assert clip.files[name].read() == expected[row["clip_id"]][name]
        mapped = clip.array("mfcc.npy", mmap=True)
        assert np.array_equal(mapped[1:3], clip.array("mfcc.npy")[1:3])
        assert available(row, tmp_path) == row
    # tar itself reads the shard back into the per-clip folders
    out = tmp_path / "untar"
    out.mkdir()
    subprocess.run(
        ["tar", "xf", str(tmp_path / "shards/train/ABOUT.tar"), "-C", str(out)], check=True
    )
    assert (out / "train/ABOUT/ABOUT_00001/pose.npy").read_bytes() == expected[
        "train/ABOUT/ABOUT_00001"
    ]["pose.npy"]
    # nothing changed: nothing to pack
    assert shards_to_pack(packed, {r["clip_id"]: r for r in packed}) == {}


def test_same_clips_give_the_same_bytes_whatever_the_order(tmp_path):
    a = [stage_clip(tmp_path / "a", f"train/W/W_0000{k}", seed=k) for k in (1, 2, 3)]
    b = [stage_clip(tmp_path / "b", f"train/W/W_0000{k}", seed=k) for k in (3, 1, 2)]
    pack_shard(tmp_path / "a", "shards/train/W.tar", a)
    pack_shard(tmp_path / "b", "shards/train/W.tar", b)
    assert (tmp_path / "a/shards/train/W.tar").read_bytes() == (
        tmp_path / "b/shards/train/W.tar"
    ).read_bytes()


def test_repacking_keeps_old_members_and_rows_find_their_new_offsets(tmp_path):
    first = pack_shard(tmp_path, "shards/train/W.tar", [stage_clip(tmp_path, "train/W/W_00002")])
    previous = {r["clip_id"]: r for r in first}
    # a new clip sorts before the kept one, so the kept one moves inside the shard
    rows = [stage_clip(tmp_path, "train/W/W_00001", seed=9), first[0]]
    assert list(shards_to_pack(rows, previous)) == ["shards/train/W.tar"]
    second = pack_shard(tmp_path, "shards/train/W.tar", rows)
    moved = next(r for r in second if r["clip_id"] == "train/W/W_00002")
    assert moved["member_offsets"] != first[0]["member_offsets"]
    # A run killed after the rewrite but before its manifest: the stale row is found again.
    assert available(first[0], tmp_path) == {**first[0], **_offsets(moved)}
    # A clip that failed this time: its shard is rewritten without it.
    plan = shards_to_pack(
        [moved, {**second[0], "status": "failed"}], {r["clip_id"]: r for r in second}
    )
    assert [r["clip_id"] for r in plan["shards/train/W.tar"]] == ["train/W/W_00002"]


def _offsets(row: dict) -> dict:
    return {k: row[k] for k in ("member_offsets", "member_sizes")}


def test_a_failed_write_leaves_the_old_shard(tmp_path):
    packed = pack_shard(tmp_path, "shards/train/W.tar", [stage_clip(tmp_path, "train/W/W_00001")])
    before = (tmp_path / "shards/train/W.tar").read_bytes()
    broken = stage_clip(tmp_path, "train/W/W_00000")
    (staging_dir(tmp_path, "train/W/W_00000") / "pose.npy").unlink()
    with pytest.raises(FileNotFoundError):
        pack_shard(tmp_path, "shards/train/W.tar", [broken, packed[0]])
    assert (tmp_path / "shards/train/W.tar").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "shards/train").iterdir()) == ["W.tar"]
    assert available(packed[0], tmp_path) == packed[0]


def test_member_check_rejects_wrong_names_sizes_and_offsets(tmp_path):
    src = tmp_path / "x.npy"
    np.save(src, np.arange(6, dtype=np.int16).reshape(2, 3))
    offset, size, _ = write_shard(tmp_path / "s.tar", {"a/b/c": {"x.npy": src}})["a/b/c"]["x.npy"]
    shard = tmp_path / "s.tar"
    placed = (offset, size)
    assert unmatched(shard, {"x.npy": placed}, "a/b/c") == []
    assert unmatched(shard, {"x.npy": placed}, "a/b/d") == ["x.npy"]
    assert unmatched(shard, {"x.npy": (offset, size + 1)}, "a/b/c") == ["x.npy"]
    assert unmatched(shard, {"x.npy": (offset + 512, size)}, "a/b/c") == ["x.npy"]
    assert unmatched(tmp_path / "missing.tar", {"x.npy": placed}, "a/b/c") == ["x.npy"]
    assert npy_memmap(Member(shard, *placed)).tolist() == [[0, 1, 2], [3, 4, 5]]
