"""The sample dataset is the same bytes on any machine with the pinned packages (issue #16):
it is encoded by the pinned PyAV wheel's codecs, not the system ffmpeg. Its summary lists every
file's MD5; those MD5s make up the raw folder's hash in the committed ``dvc.lock``; clips
regenerated here match them, so a fresh clone's ``dvc repro`` reproduces the lock."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from dvc_data.hashfile.hash_info import HashInfo
from dvc_data.hashfile.meta import Meta
from dvc_data.hashfile.tree import Tree

from eamm.config import SampleDataParams, load_section
from eamm.sample.dataset import plan, write_clip
from tests.conftest import ROOT

SUMMARY = ROOT / "data" / "sample" / "summary.json"


def dvc_dir_md5(files: dict[str, str]) -> str:
    """The hash DVC records for a folder holding ``files`` (relative path -> MD5)."""
    tree = Tree()
    for rel, md5 in files.items():
        tree.add(tuple(rel.split("/")), Meta(), HashInfo("md5", md5))
    tree.digest()
    return tree.hash_info.value


@pytest.fixture(scope="module")
def locked() -> dict:
    stage = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]["sample_data"]
    return {o["path"]: o["md5"] for o in stage["outs"]}


@pytest.fixture(scope="module")
def summary() -> dict:
    return json.loads(SUMMARY.read_text())


def test_the_summary_lists_exactly_the_locked_files(locked, summary):
    assert dvc_dir_md5(summary["files"]) == locked["data/sample/raw"]
    clips = summary["clips"]
    videos = [f for f in summary["files"] if f.endswith(".mp4")]
    assert len(videos) == clips["mead"] + clips["lrw"]


def pick(dataset: str, emotion: str | None = None):
    params = load_section(ROOT / "params.yaml", "sample_data", SampleDataParams)
    return next(c for c in plan(params) if c.dataset == dataset and emotion in (None, c.emotion))


@pytest.mark.parametrize(
    "clip",
    [pick("mead", "happy"), pick("mead", "neutral"), pick("lrw")],
    ids=["mead-happy", "mead-neutral", "lrw"],
)
def test_regenerated_clips_have_the_locked_bytes(tmp_path, summary, clip):
    record = write_clip(clip, tmp_path)
    assert set(record["md5"]) == {p for p in (clip.video, clip.audio) if p}
    for rel, md5 in record["md5"].items():
        assert hashlib.md5((tmp_path / rel).read_bytes()).hexdigest() == md5
        assert summary["files"][rel] == md5, f"{rel}: bytes differ from the committed sample"
