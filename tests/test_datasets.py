"""Dataset recipes (MEAD, LRW) on dummy trees: entries, layout problems, filters, index I/O."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eamm.config import DatasetsParams
from eamm.datasets import (
    LrwRecipe,
    MeadRecipe,
    get_recipe,
    load_test_speakers,
    recipe_from_params,
)
from eamm.datasets.base import ClipEntry, IndexProblem
from eamm.datasets.index_io import INDEX_SCHEMA, read_index, write_index, write_index_report
from eamm.datasets.mead import DEFAULT_TEST_SPEAKERS, VIEWS
from eamm.errors import EammError

ROOT = Path(__file__).resolve().parents[1]


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


@pytest.fixture
def mead(tmp_path: Path) -> Path:
    root = tmp_path / "mead"
    touch(
        root,
        # valid clips (M003 is a test speaker)
        "M003/video/front/angry/level_1/001.mp4",
        "M003/video/front/angry/level_1/002.mp4",
        "M003/video/front/neutral/level_1/001.mp4",
        "M003/video/left_30/angry/level_1/001.mp4",
        "M003/audio/angry/level_1/001.m4a",
        "M003/audio/angry/level_1/002.m4a",
        "M003/audio/neutral/level_1/001.m4a",
        "M005/video/front/happy/level_2/003.mp4",
        "M005/video/front/happy/level_3/010.mp4",  # no .m4a: audio None
        "M005/video/down/sad/level_1/001.mp4",
        "M005/audio/happy/level_2/003.m4a",
        "M005/audio/happy/level_2/004.WAV",  # a converted copy: used
        "M005/audio/happy/level_2/004.txt",
        "W011/video/front/sad/level_2/005.mp4",
        "W011/audio/sad/level_2/005.m4a",
        "W011/audio/fear/level_1/009.m4a",  # audio without video: fine
        "W011/audio/odd/notes.txt",  # audio tree oddities are not reported
        # hidden files are ignored
        ".DS_Store",
        "M003/video/front/angry/level_1/._001.mp4",
        # broken layout
        "M003/video/front/joyful/level_1/001.mp4",
        "M003/video/front/angry/level_1/notes.txt",
        "M003/video/front/angry/level_1/004.MP4",
        "M003/video/front/angry/level_1/1.mp4",
        "M005/video/front/happy/level_4/001.mp4",
        "M005/video/front/neutral/level_2/001.mp4",
        "M005/extra_stuff/001.mp4",
        "M005/readme.txt",
        "W011/video/back/angry/level_1/001.mp4",
        "X12/video/front/angry/level_1/001.mp4",
    )
    touch(tmp_path, "outside/linked.mp4", "outside_dir/angry/level_1/001.mp4")
    level = root / "M003/video/front/angry/level_1"
    (level / "003.mp4").symlink_to(tmp_path / "outside/linked.mp4")  # followed
    (level / "005.mp4").symlink_to(tmp_path / "outside/missing.mp4")  # broken
    (level / "006.mp4").symlink_to("006.mp4")  # a loop
    (root / "M005/video/front/happy/level_2/004.mp4").symlink_to("003.mp4")  # inside
    (root / "W011/video/top").symlink_to(tmp_path / "outside_dir", target_is_directory=True)
    return root


def mead_entry(speaker, view, emotion, level, utt, split, audio: bool | str = True) -> ClipEntry:
    return ClipEntry(
        clip_id=f"{speaker}/{view}/{emotion}/level_{level}/{utt}",
        dataset="mead",
        split=split,
        speaker=speaker,
        emotion=emotion,
        level=level,
        view=view,
        word=None,
        utterance=utt,
        video=f"{speaker}/video/{view}/{emotion}/level_{level}/{utt}.mp4",
        audio=f"{speaker}/audio/{emotion}/level_{level}/{utt}{'.m4a' if audio is True else audio}"
        if audio
        else None,
    )


MEAD_FRONT = [
    mead_entry("M003", "front", "angry", 1, "001", "test"),
    mead_entry("M003", "front", "angry", 1, "002", "test"),
    mead_entry("M003", "front", "angry", 1, "003", "test", audio=False),
    mead_entry("M003", "front", "neutral", 1, "001", "test"),
    mead_entry("M005", "front", "happy", 2, "003", "train"),
    mead_entry("M005", "front", "happy", 2, "004", "train", audio=".WAV"),
    mead_entry("M005", "front", "happy", 3, "010", "train", audio=False),
    mead_entry("W011", "front", "sad", 2, "005", "train"),
]
MEAD_PROBLEMS = [
    ("M003/video/front/angry/level_1/004.MP4", "extension '.MP4' is not '.mp4' (rename it)"),
    ("M003/video/front/angry/level_1/005.mp4", "broken symbolic link"),
    ("M003/video/front/angry/level_1/006.mp4", "symbolic link loop"),
    ("M003/video/front/angry/level_1/1.mp4", "file name '1.mp4' is not <3 digits>.mp4"),
    ("M003/video/front/angry/level_1/notes.txt", "not an .mp4 file"),
    ("M003/video/front/joyful", "unknown emotion folder 'joyful'"),
    ("M005/extra_stuff", "unknown folder 'extra_stuff' (expected video and audio)"),
    ("M005/readme.txt", "unexpected file (expected video and audio folders)"),
    ("M005/video/front/happy/level_4", "unknown level folder 'level_4'"),
    ("M005/video/front/neutral/level_2", "'level_2' under neutral (neutral has only level_1)"),
    ("W011/video/back", "unknown view folder 'back'"),
    ("X12", "unknown speaker folder 'X12'"),
]
# links: inside (an untrusted download): the links that leave the raw folder are refused
MEAD_OUTSIDE = [
    ("M003/video/front/angry/level_1/003.mp4", "resolves outside the raw root"),
    ("M003/video/front/angry/level_1/005.mp4", "resolves outside the raw root"),
    ("W011/video/top", "resolves outside the raw root"),
]


def pairs(problems: list[IndexProblem]) -> list[tuple[str, str]]:
    return [(p.path, p.reason) for p in problems]


def test_mead_entries_and_problems(mead: Path) -> None:
    index = MeadRecipe().index(mead)
    assert index.dataset == "mead"
    assert index.root == str(mead.resolve())
    assert index.entries == MEAD_FRONT
    assert pairs(index.problems) == MEAD_PROBLEMS


def test_mead_filters(mead: Path) -> None:
    all_views = MeadRecipe(views=VIEWS).index(mead)
    extra = {e.clip_id for e in all_views.entries} - {e.clip_id for e in MEAD_FRONT}
    assert extra == {
        "M003/left_30/angry/level_1/001",
        "M005/down/sad/level_1/001",
        "W011/top/angry/level_1/001",  # a folder link to outside the raw folder
    }
    assert pairs(all_views.problems) == MEAD_PROBLEMS

    only = MeadRecipe(speakers=["M005"], emotions=["happy"]).index(mead)
    assert [e.clip_id for e in only.entries] == [
        "M005/front/happy/level_2/003",
        "M005/front/happy/level_2/004",
        "M005/front/happy/level_3/010",
    ]
    # deselected clips are not problems; unknown names are still reported where they are seen
    assert pairs(only.problems) == [
        ("M005/extra_stuff", "unknown folder 'extra_stuff' (expected video and audio)"),
        ("M005/readme.txt", "unexpected file (expected video and audio folders)"),
        ("M005/video/front/happy/level_4", "unknown level folder 'level_4'"),
        ("X12", "unknown speaker folder 'X12'"),
    ]

    swapped = MeadRecipe(test_speakers=("M005",)).index(mead)
    assert {e.speaker: e.split for e in swapped.entries} == {
        "M003": "train",
        "M005": "test",
        "W011": "train",
    }


def test_mead_archives_not_extracted_say_how_to_extract(tmp_path: Path) -> None:
    """MEAD ships video.tar and audio.tar per actor; one left packed is named as such."""
    touch(tmp_path, "M003/video.tar", "M003/audio.tar", "W009/video/front/sad/level_1/001.mp4")
    touch(tmp_path, "W009/audio.tar")
    index = MeadRecipe().index(tmp_path)
    assert [e.clip_id for e in index.entries] == ["W009/front/sad/level_1/001"]
    assert pairs(index.problems) == [
        ("M003", "no video folder"),
        ("M003/audio.tar", "MEAD's archive, not extracted (tar -xf M003/audio.tar -C M003)"),
        ("M003/video.tar", "MEAD's archive, not extracted (tar -xf M003/video.tar -C M003)"),
        ("W009/audio.tar", "MEAD's archive, not extracted (tar -xf W009/audio.tar -C W009)"),
    ]


def test_mead_links_inside_refuses_links_that_leave_the_raw_folder(mead: Path) -> None:
    index = MeadRecipe(links="inside").index(mead)
    assert index.entries == [e for e in MEAD_FRONT if e.utterance != "003" or e.level != 1]
    expected = [p for p in MEAD_PROBLEMS if p[1] != "broken symbolic link"] + MEAD_OUTSIDE
    assert pairs(index.problems) == sorted(expected)
    with pytest.raises(EammError, match="mead links: unknown value 'all'"):
        MeadRecipe(links="all")


def test_mead_root_through_symlink_and_errors(mead: Path, tmp_path: Path) -> None:
    link = tmp_path / "mead_link"
    link.symlink_to(mead, target_is_directory=True)
    index = MeadRecipe().index(link)
    assert index.root == str(mead.resolve())
    assert index.entries == MEAD_FRONT
    missing = tmp_path / "nope"
    with pytest.raises(EammError, match=f"^{re.escape(str(missing))}: raw folder does not exist$"):
        MeadRecipe().index(missing)
    with pytest.raises(EammError, match="mead views: unknown value 'side'"):
        MeadRecipe(views=["side"])
    with pytest.raises(EammError, match="mead speakers: unknown value 'X12'"):
        MeadRecipe(speakers=["X12"])


def test_get_recipe() -> None:
    recipe = get_recipe("mead", views=("front", "top"))
    assert isinstance(recipe, MeadRecipe)
    assert recipe.views == ("front", "top")
    assert isinstance(get_recipe("lrw", words=["ABOUT"]), LrwRecipe)
    with pytest.raises(EammError, match="unknown dataset 'vox' \\(known: lrw, mead\\)"):
        get_recipe("vox")
    with pytest.raises(EammError, match="dataset 'lrw': bad options"):
        get_recipe("lrw", views=("front",))


def test_recipes_from_params_apply_their_split_rule(mead: Path, tmp_path: Path) -> None:
    """The params section configures each recipe; every entry's split is its recipe's rule."""
    split_file = tmp_path / "split.yaml"
    split_file.write_text("version: 1\ntest_speakers: [W011]\n")
    lrw = tmp_path / "lrw"
    touch(lrw, "lipread_mp4/ABOUT/train/ABOUT_00001.mp4", "lipread_mp4/ABOUT/val/ABOUT_00001.mp4")
    params = DatasetsParams(
        mead={"raw": str(mead), "views": ["front", "down"], "split_file": str(split_file)},
        lrw={"raw": str(lrw), "splits": ["val"]},
    )
    raw, recipe = recipe_from_params("mead", params)
    assert raw == str(mead)
    assert isinstance(recipe, MeadRecipe) and recipe.views == ("front", "down")
    entries = recipe.index(Path(raw)).entries
    assert {(e.speaker, e.split) for e in entries} == {
        ("M003", "train"),
        ("M005", "train"),
        ("W011", "test"),
    }
    assert all(e.split == recipe.split_of(e) for e in entries)
    raw, recipe = recipe_from_params("lrw", params)
    [entry] = recipe.index(Path(raw)).entries
    assert (entry.clip_id, entry.split) == ("val/ABOUT/ABOUT_00001", "val")
    with pytest.raises(EammError, match="unknown dataset 'vox' \\(known: lrw, mead\\)"):
        recipe_from_params("vox", params)


def test_split_file(tmp_path: Path) -> None:
    assert load_test_speakers(ROOT / "splits/mead_v1.yaml") == DEFAULT_TEST_SPEAKERS
    bad = {
        "list.yaml": "- M003\n",
        "version.yaml": "version: '1'\ntest_speakers: [M003]\n",
        "ids.yaml": "version: 1\ntest_speakers: [M003, X1]\n",
        "empty.yaml": "version: 1\ntest_speakers: []\n",
        "dupes.yaml": "version: 1\ntest_speakers: [M003, M003]\n",
        "syntax.yaml": "version: [1\n",
    }
    for name, text in bad.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(EammError, match=f"^{re.escape(str(path))}: "):
            load_test_speakers(path)
    with pytest.raises(EammError, match=r"missing\.yaml: cannot read split file \(.*; datasets"):
        load_test_speakers(tmp_path / "missing.yaml")


@pytest.fixture
def lrw(tmp_path: Path) -> Path:
    root = tmp_path / "lrw"
    base = "lipread_mp4"
    touch(
        root,
        *(
            f"{base}/{w}/{s}/{w}_00001.mp4"
            for w in ("ABOUT", "WORLD")
            for s in ("train", "val", "test")
        ),
        f"{base}/ABOUT/train/ABOUT_00002.mp4",
        f"{base}/ABOUT/train/ABOUT_00001.txt",  # metadata beside a clip: fine
        f"{base}/ABOUT/train/WORLD_00001.mp4",
        f"{base}/ABOUT/val/ABOUT_1.mp4",
        f"{base}/ABOUT/dev/ABOUT_00001.mp4",
        f"{base}/ABOUT/test/ABOUT_00002.Mp4",
        f"{base}/after/train/after_00001.mp4",
        f"{base}/README",
        "README.md",  # beside lipread_mp4: not looked at
    )
    return root


def lrw_ids(entries: list[ClipEntry]) -> list[str]:
    return [e.clip_id for e in entries]


def test_lrw_entries_and_problems(lrw: Path) -> None:
    index = LrwRecipe().index(lrw)
    assert index.dataset == "lrw"
    assert lrw_ids(index.entries) == [
        "test/ABOUT/ABOUT_00001",
        "test/WORLD/WORLD_00001",
        "train/ABOUT/ABOUT_00001",
        "train/ABOUT/ABOUT_00002",
        "train/WORLD/WORLD_00001",
        "val/ABOUT/ABOUT_00001",
        "val/WORLD/WORLD_00001",
    ]
    assert index.entries[2] == ClipEntry(
        clip_id="train/ABOUT/ABOUT_00001",
        dataset="lrw",
        split="train",
        speaker=None,
        emotion=None,
        level=None,
        view=None,
        word="ABOUT",
        utterance="00001",
        video="lipread_mp4/ABOUT/train/ABOUT_00001.mp4",
        audio=None,
    )
    assert pairs(index.problems) == [
        ("lipread_mp4/ABOUT/dev", "unknown split folder 'dev'"),
        (
            "lipread_mp4/ABOUT/test/ABOUT_00002.Mp4",
            "extension '.Mp4' is not '.mp4' (rename it)",
        ),
        (
            "lipread_mp4/ABOUT/train/WORLD_00001.mp4",
            "file name 'WORLD_00001.mp4' does not match its word folder 'ABOUT'",
        ),
        (
            "lipread_mp4/ABOUT/val/ABOUT_1.mp4",
            "file name 'ABOUT_1.mp4' is not ABOUT_<5 digits>.mp4",
        ),
        ("lipread_mp4/README", "unexpected file (expected word folders)"),
        ("lipread_mp4/after", "unknown word folder 'after' (LRW words are A-Z)"),
    ]


def test_lrw_root_is_lipread_mp4_and_filters(lrw: Path, tmp_path: Path) -> None:
    inner = LrwRecipe(words=["WORLD"], splits=["val", "test"]).index(lrw / "lipread_mp4")
    assert inner.root == str((lrw / "lipread_mp4").resolve())
    assert lrw_ids(inner.entries) == ["test/WORLD/WORLD_00001", "val/WORLD/WORLD_00001"]
    assert [e.video for e in inner.entries] == [
        "WORLD/test/WORLD_00001.mp4",
        "WORLD/val/WORLD_00001.mp4",
    ]
    assert pairs(inner.problems) == [
        ("README", "unexpected file (expected word folders)"),
        ("after", "unknown word folder 'after' (LRW words are A-Z)"),
    ]
    with pytest.raises(EammError, match="no lipread_mp4 folder"):
        LrwRecipe().index(tmp_path)
    with pytest.raises(EammError, match="raw folder does not exist"):
        LrwRecipe().index(tmp_path / "missing")
    with pytest.raises(EammError, match="lrw splits: unknown value 'dev'"):
        LrwRecipe(splits=["dev"])


def test_lrw_follows_an_outside_lipread_link_unless_links_inside(tmp_path: Path, lrw: Path) -> None:
    root = tmp_path / "linked"
    root.mkdir()
    (root / "lipread_mp4").symlink_to(lrw / "lipread_mp4", target_is_directory=True)
    assert LrwRecipe().index(root).entries == LrwRecipe().index(lrw).entries
    index = LrwRecipe(links="inside").index(root)
    assert index.entries == []
    assert pairs(index.problems) == [("lipread_mp4", "resolves outside the raw root")]


def test_index_round_trip_and_report(mead: Path, tmp_path: Path) -> None:
    assert INDEX_SCHEMA.names == [f.name for f in dataclasses.fields(ClipEntry)]
    index = MeadRecipe(views=VIEWS).index(mead)
    out = tmp_path / "out" / "mead_index.parquet"
    write_index(index, out)
    assert read_index(out) == index
    schema = pq.read_schema(out)
    assert schema.field("level").type == pa.int16()
    assert not schema.field("clip_id").nullable and schema.field("audio").nullable
    assert schema.metadata[b"dataset"] == b"mead"
    assert schema.metadata[b"root"] == str(mead.resolve()).encode()

    report_path = tmp_path / "out" / "mead_index_report.json"
    write_index_report(index, report_path)
    report = json.loads(report_path.read_text())
    assert report["dataset"] == "mead" and report["root"] == index.root
    assert report["clips"] == 11
    assert report["by_split"] == {"train": 6, "val": 0, "test": 5}
    assert [(p["path"], p["reason"]) for p in report["problems"]] == MEAD_PROBLEMS
    assert sorted(os.listdir(out.parent)) == ["mead_index.parquet", "mead_index_report.json"]


def test_index_stores_a_project_root_relative_to_itself(
    mead: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside the current folder the root is stored relative to the index, so two clones at
    different paths write the same bytes; the index still reads back the absolute root."""
    index = MeadRecipe(views=VIEWS).index(mead)
    digests = []
    for clone in ("a", "b"):
        project = tmp_path / clone
        shutil.copytree(mead, project / "raw", symlinks=True)
        monkeypatch.chdir(project)
        here = MeadRecipe(views=VIEWS).index(project / "raw")
        out = project / "data" / "index.parquet"
        write_index(here, out)
        assert pq.read_schema(out).metadata[b"root"] == b"../raw"
        assert read_index(out).root == str((project / "raw").resolve())
        digests.append(hashlib.md5(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    monkeypatch.chdir(tmp_path / "a")  # a root outside the project stays absolute
    write_index(index, tmp_path / "a" / "other.parquet")
    assert pq.read_schema(tmp_path / "a" / "other.parquet").metadata[b"root"] == index.root.encode()


def test_read_index_rejects_other_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet")
    with pytest.raises(EammError, match=f"^{re.escape(str(junk))}: not a readable dataset index"):
        read_index(junk)
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"clip_id": ["a"]}), plain)
    with pytest.raises(EammError, match=f"^{re.escape(str(plain))}: not a dataset index"):
        read_index(plain)
    with pytest.raises(EammError, match=r"missing\.parquet: not a readable dataset index"):
        read_index(tmp_path / "missing.parquet")


def test_a_name_that_is_not_utf8_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    touch(tmp_path, "lipread_mp4/ABOUT/train/ABOUT_00001.mp4")
    folder = os.fsencode(tmp_path / "lipread_mp4" / "ABOUT" / "train")
    with open(os.path.join(folder, b"ABOUT_0000\xff.mp4"), "wb") as handle:
        handle.write(b"x")
    index = LrwRecipe().index(tmp_path)
    assert [e.clip_id for e in index.entries] == ["train/ABOUT/ABOUT_00001"]
    assert [(p.path, p.reason) for p in index.problems] == [
        ("lipread_mp4/ABOUT/train/ABOUT_0000\\xff.mp4", "name is not valid UTF-8 (rename it)")
    ]
    out = tmp_path / "index.parquet"
    write_index(index, out)  # the problems' JSON stores a printable name
    write_index_report(index, tmp_path / "report.json")
    assert read_index(out).problems == index.problems
