"""Selections of ``datasets.<name>`` that match nothing in the raw tree are layout problems, and
``preprocess_run.batch_size`` names only datasets there are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from eamm.config import (
    MEAD_EMOTIONS,
    DatasetsParams,
    PreprocessRunParams,
    load_section,
    validate_section,
)
from eamm.datasets import LrwRecipe, MeadRecipe, recipe_from_params
from eamm.datasets.index_io import read_index, write_index, write_index_report
from eamm.datasets.mead import VIEWS
from eamm.errors import EammError
from eamm.stages import DATASETS
from tests.conftest import ROOT
from tests.test_cli_errors import TEMPORARY_SERVER, assert_one_line_error, eamm
from tests.test_datasets import touch

SPLIT_FILE = str(ROOT / "splits" / "mead_v1.yaml")


@pytest.fixture
def mead(tmp_path: Path) -> Path:
    root = tmp_path / "mead"
    touch(
        root,
        "M003/video/front/angry/level_1/001.mp4",
        "M003/video/front/neutral/level_1/001.mp4",
        "M003/video/down/angry/level_1/001.mp4",
        "W011/video/front/happy/level_2/005.mp4",
        "W011/video/front/sad/level_1/002.mp4",
        "W011/audio/happy/level_2/005.m4a",
    )
    return root


@pytest.fixture
def lrw(tmp_path: Path) -> Path:
    root = tmp_path / "lrw"
    touch(
        root,
        "lipread_mp4/ABOUT/train/ABOUT_00001.mp4",
        "lipread_mp4/ABOUT/val/ABOUT_00001.mp4",
        "lipread_mp4/WORLD/train/WORLD_00001.mp4",
    )
    return root


def indexed(name: str, raw: Path, **section):
    """The index of ``raw`` by the recipe ``datasets.<name>`` (``section``) configures."""
    other = {"mead": {"raw": "unused", "split_file": SPLIT_FILE}, "lrw": {"raw": "unused"}}
    params = DatasetsParams(**(other | {name: {"raw": str(raw), **section}}))
    _, recipe = recipe_from_params(name, params)
    return recipe.index(raw)


def pairs(index) -> list[tuple[str, str]]:
    return [(p.path, p.reason) for p in index.problems]


def test_a_requested_word_not_in_the_tree_is_a_problem(lrw: Path, tmp_path: Path) -> None:
    index = indexed("lrw", lrw, words=["ABOUT", "WROLD"])
    assert index.entries == LrwRecipe(words=["ABOUT"]).index(lrw).entries
    assert [e.clip_id for e in index.entries] == [
        "train/ABOUT/ABOUT_00001",
        "val/ABOUT/ABOUT_00001",
    ]
    assert pairs(index) == [
        (
            "lipread_mp4/WROLD",
            "'WROLD' requested in datasets.lrw.words, not found under lipread_mp4",
        )
    ]
    # counted and listed in the report and the index like any layout problem
    report = write_index_report(index, tmp_path / "report.json")
    assert report["problems"] == [{"path": p, "reason": r} for p, r in pairs(index)]
    assert json.loads((tmp_path / "report.json").read_text())["problems"] == report["problems"]
    write_index(index, tmp_path / "index.parquet")
    assert read_index(tmp_path / "index.parquet").problems == index.problems
    # the root is lipread_mp4 itself
    inner = indexed("lrw", lrw / "lipread_mp4", words=["WROLD"])
    assert inner.entries == []
    assert pairs(inner) == [
        ("WROLD", "'WROLD' requested in datasets.lrw.words, not found under the raw folder")
    ]


def test_a_requested_split_no_word_has_is_a_problem_all_splits_are_not(lrw: Path) -> None:
    index = indexed("lrw", lrw, splits=["val", "test"])
    assert [e.clip_id for e in index.entries] == ["val/ABOUT/ABOUT_00001"]
    assert pairs(index) == [
        (
            "lipread_mp4/*/test",
            "'test' requested in datasets.lrw.splits, not found under any lipread_mp4/<WORD> "
            "folder",
        )
    ]
    # every split (params.yaml's list): whatever is there, no test folder is no problem
    assert indexed("lrw", lrw, splits=["train", "val", "test"]).problems == []
    assert indexed("lrw", lrw).problems == []


def test_requested_speakers_views_emotions_not_in_the_tree_are_problems(mead: Path) -> None:
    index = indexed(
        "mead",
        mead,
        speakers=["W011", "W099"],
        views=["front", "left_30"],
        emotions=["happy", "fear"],
    )
    plain = MeadRecipe(speakers=["W011"], views=["front"], emotions=["happy"]).index(mead)
    assert index.entries == plain.entries
    assert [e.clip_id for e in index.entries] == ["W011/front/happy/level_2/005"]
    assert pairs(index) == [
        (
            "*/video/*/fear",
            "'fear' requested in datasets.mead.emotions, not found under any "
            "<speaker>/video/<view> folder",
        ),
        (
            "*/video/left_30",
            "'left_30' requested in datasets.mead.views, not found under any <speaker>/video "
            "folder",
        ),
        ("W099", "'W099' requested in datasets.mead.speakers, not found under the raw folder"),
    ]


def test_found_values_and_selections_of_everything_say_nothing(mead: Path) -> None:
    found = indexed("mead", mead, speakers=["M003"], views=["down"], emotions=["angry"])
    assert [e.clip_id for e in found.entries] == ["M003/down/angry/level_1/001"]
    assert found.problems == []
    # null, or every emotion (view) there is: whatever is there, no fear folder is no problem
    everything = indexed("mead", mead, emotions=list(MEAD_EMOTIONS), views=list(VIEWS))
    assert everything.problems == indexed("mead", mead, emotions=None, views=list(VIEWS)).problems
    assert everything.problems == []


def test_a_selection_under_a_missing_speaker_is_not_said_again(mead: Path) -> None:
    """Nothing was looked through for left_30: the missing speaker is the one problem."""
    index = indexed("mead", mead, speakers=["W099"], views=["left_30"], emotions=["fear"])
    assert index.entries == []
    assert [p.path for p in index.problems] == ["W099"]


def test_recipes_built_in_code_only_filter(mead: Path, lrw: Path) -> None:
    assert MeadRecipe(speakers=["W099"], views=["left_30"]).index(mead).problems == []
    assert LrwRecipe(words=["WROLD"], splits=["test"]).index(lrw).problems == []


def test_batch_size_names_only_datasets_there_are(tmp_path: Path) -> None:
    assert PreprocessRunParams(batch_size=dict.fromkeys(DATASETS, 2)).batch_size == {
        "mead": 2,
        "lrw": 2,
    }
    with pytest.raises(EammError) as err:
        validate_section(
            {"batch_size": {"mead": 4, "lwr": 16}}, "preprocess_run", PreprocessRunParams, "p.yaml"
        )
    message = str(err.value)
    assert message.startswith("p.yaml: bad value for preprocess_run.batch_size: ")
    assert "unknown dataset 'lwr' (known: mead, lrw)" in message and "\n" not in message
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["preprocess_run"]["batch_size"] = {"mead": 4, "lwr": 16}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(EammError, match=r"preprocess_run\.batch_size: .*'lwr'"):
        load_section(tmp_path / "params.yaml", "preprocess_run", PreprocessRunParams)


def test_a_misspelt_batch_size_key_is_refused_before_the_server_starts(
    lrw: Path, tmp_path: Path
) -> None:
    """``{mead: 4, lwr: 16}`` validated, and lrw ran in batches of the flow's default."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["datasets"]["lrw"]["raw"] = str(lrw)  # a raw tree that is there: the params refuse
    params["preprocess_run"]["batch_size"] = {"mead": 4, "lwr": 16}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result, _ = eamm("preprocess", "lrw", "--out", "out", cwd=tmp_path)
    assert_one_line_error(result, "params.yaml", "preprocess_run.batch_size", "'lwr'")
    assert TEMPORARY_SERVER not in result.stderr
