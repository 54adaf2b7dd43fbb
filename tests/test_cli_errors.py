"""The CLI as a user meets it (issue 15, item 8): one-line errors, tracebacks only with
``--debug``, inputs and params checked before a model loads or Prefect's server starts, and the
single-clip commands working from any folder without a Prefect server.

Every test runs the installed ``eamm`` in a subprocess, most from a temporary folder outside the
repository (no params.yaml, no models/ there).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import ROOT, VENV_BIN

MODELS = ROOT / "models"
PORTRAIT = ROOT / "data" / "sample" / "portrait.png"
SPEECH = ROOT / "data" / "sample" / "raw" / "mead" / "W009" / "audio" / "neutral" / "level_1"
LRW_CLIP = "lrw/lipread_mp4/ABOUT/train/ABOUT_00001.mp4"
TEMPORARY_SERVER = "Starting temporary server"


def eamm(*args: str | Path, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run the installed CLI in ``cwd`` with no Prefect server configured; (result, seconds)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "EAMM_DEBUG")}
    env.pop("EAMM_PROJECT_ROOT", None)
    start = time.monotonic()
    result = subprocess.run(
        [str(VENV_BIN / "eamm"), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result, time.monotonic() - start


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_one_line_error(result: subprocess.CompletedProcess, *names: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    (line,) = error_lines(result)
    for name in names:
        assert name in line, line
    return line


def test_bad_input_fails_without_starting_a_server(tmp_path: Path) -> None:
    result, _ = eamm(
        "generate",
        *("--photo", tmp_path / "missing.png", "--audio", tmp_path / "missing.wav"),
        *("--out", tmp_path / "out.mp4", "--checkpoints", tmp_path),
        cwd=tmp_path,
    )
    assert_one_line_error(result, "missing.png", "--photo")
    assert result.returncode == 2
    assert TEMPORARY_SERVER not in result.stderr


def test_a_photo_that_does_not_decode_is_refused_before_the_models(tmp_path: Path) -> None:
    """ffprobe takes any bytes named .jpg for a JPEG stream; the photo is decoded as generation
    decodes it before the checkpoints are looked at (here a folder without any)."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    result, _ = eamm(
        "generate",
        *("--photo", photo, "--audio", tmp_path / "speech.wav"),
        *("--out", tmp_path / "out.mp4", "--checkpoints", tmp_path),
        cwd=tmp_path,
    )
    line = assert_one_line_error(result, "photo.jpg", "unreadable image", "--photo")
    assert "JPEG, PNG" in line and result.returncode == 2


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result, _ = eamm(
        "--debug",
        "generate",
        *("--photo", tmp_path / "missing.png", "--audio", tmp_path / "missing.wav"),
        *("--out", tmp_path / "out.mp4", "--checkpoints", tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert len(error_lines(result)) == 1


def test_checkpoint_folder_outside_the_project_is_named(tmp_path: Path) -> None:
    """Outside the repository there is no models/: one line saying so (was a params traceback)."""
    photo = tmp_path / "photo.png"
    result, _ = eamm("generate", "--photo", photo, "--audio", photo, "--out", "o.mp4", cwd=tmp_path)
    assert_one_line_error(result, "models", "--checkpoints")


def test_params_in_the_working_folder_override_the_packaged_defaults(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"preprocess": {"crop_size": 8}}))
    result, _ = eamm("preprocess-clip", tmp_path / "clip.mp4", "--out", "out", cwd=tmp_path)
    assert_one_line_error(result, "params.yaml", "preprocess.crop_size")


def test_a_file_given_as_the_raw_folder_is_named_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    result, _ = eamm(
        *("index", "mead", "--raw", "afile", "--out", "i.parquet"),
        *("--params", ROOT / "params.yaml"),
        cwd=tmp_path,
    )
    assert_one_line_error(result, "afile: a file, not a folder (--raw)")


def test_a_raw_folder_that_cannot_hold_the_dataset_is_refused_before_prefect(
    tmp_path: Path,
) -> None:
    """An empty --raw, or an LRW one without lipread_mp4: one line before Prefect's server
    starts (it was found inside the flow, 15 s in, after Prefect's task line); checked after
    the arguments' other checks and Prefect's set-up (flows' import: about 2 s). Judged by
    the server's line, not the time (a timed bound flaked on a loaded machine)."""
    (tmp_path / "raw").mkdir()
    common = ("--raw", "raw", "--params", ROOT / "params.yaml")
    for command in (("preprocess", "mead", "--out", "p"), ("index", "lrw", "--out", "i.parquet")):
        result, _ = eamm(*command, *common, cwd=tmp_path)
        assert_one_line_error(result, "raw: an empty folder, no ")
        assert TEMPORARY_SERVER not in result.stderr
    (tmp_path / "raw" / "ABOUT").mkdir()
    result, _ = eamm("preprocess", "lrw", "--out", "p", *common, cwd=tmp_path)
    assert_one_line_error(result, "no lipread_mp4 folder in the LRW raw folder (--raw)")
    assert TEMPORARY_SERVER not in result.stderr and not (tmp_path / "p").exists()


def test_a_folder_given_as_the_photo_and_an_empty_audio_file_are_named(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "photo.png").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "grey.png")
    (tmp_path / "speech.wav").write_bytes(b"")
    common = ("generate", "--out", "o.mp4", "--checkpoints", tmp_path)
    result, _ = eamm(*common, "--photo", "photo.png", "--audio", "speech.wav", cwd=tmp_path)
    assert_one_line_error(result, "photo.png: a folder, not a file (--photo)")
    result, _ = eamm(*common, "--photo", "grey.png", "--audio", "speech.wav", cwd=tmp_path)
    assert_one_line_error(result, "speech.wav: unreadable media (empty file) (--audio)")


def test_a_folder_named_as_the_params_file_is_named_a_folder(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").mkdir()
    result, _ = eamm("train", "train_fomm", cwd=tmp_path)
    assert_one_line_error(result, "params.yaml: a folder, not a params file (--params)")


def test_missing_params_file_is_one_line(tmp_path: Path) -> None:
    result, _ = eamm(
        "preprocess-clip", "clip.mp4", "--out", "out", "--params", "nope.yaml", cwd=tmp_path
    )
    assert_one_line_error(result, "nope.yaml", "--params")


def test_a_checkpoint_file_given_as_the_checkpoint_folder_says_so(tmp_path: Path) -> None:
    """It said "checkpoint folder not found" of a file that exists."""
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    result, _ = eamm(
        *("generate", "--photo", "p.png", "--audio", "a.wav", "--out", "o.mp4"),
        *("--checkpoints", "checkpoint.pt"),
        cwd=tmp_path,
    )
    assert_one_line_error(result, "checkpoint.pt: a file", "--checkpoints", "fomm/")


def test_a_pipeline_command_outside_the_project_names_the_missing_params(tmp_path: Path) -> None:
    """The dataset commands read the project's params (datasets, splits): outside it, one line
    saying where it looked and what to do (was "cannot read params ([Errno 2] ...)")."""
    result, _ = eamm("preprocess", "lrw", "--out", "out", cwd=tmp_path)
    line = assert_one_line_error(result, "params.yaml", str(tmp_path), "--params")
    assert "Errno" not in line
    assert not (tmp_path / "out").exists()


def test_an_unreachable_dask_scheduler_is_refused_before_anything_is_written(tmp_path: Path):
    """``--runner tcp://...`` where nothing listens: one line naming --runner within seconds,
    no index or output folder left (was: exit 1 after Dask's 30 s timeout, index written)."""
    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        (tmp_path / "raw" / "lipread_mp4").mkdir(parents=True)
        result, seconds = eamm(
            *("preprocess", "lrw", "--out", tmp_path / "out", "--raw", tmp_path / "raw"),
            *("--params", ROOT / "params.yaml", "--runner", f"tcp://127.0.0.1:{port}"),
            cwd=tmp_path,
        )
    assert_one_line_error(result, f"tcp://127.0.0.1:{port}", "--runner", "no Dask scheduler")
    assert TEMPORARY_SERVER not in result.stderr
    assert seconds < 20
    assert not (tmp_path / "out").exists()


def test_a_prefect_server_that_does_not_answer_is_named(tmp_path: Path) -> None:
    """``PREFECT_API_URL`` naming a server that is down: one line naming it and what to do
    (was "RuntimeError: Failed to reach API at ..." with exit 1)."""
    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/api"
        (tmp_path / "raw" / "lipread_mp4").mkdir(parents=True)
        result = subprocess.run(
            [
                *(str(VENV_BIN / "eamm"), "index", "lrw", "--raw", "raw"),
                *("--out", "index.parquet", "--params", str(ROOT / "params.yaml")),
            ],
            cwd=tmp_path,
            env={**os.environ, "PREFECT_API_URL": url, "EAMM_PROJECT_ROOT": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=600,
        )
    line = assert_one_line_error(result, f"PREFECT_API_URL {url}", "prefect server start")
    assert result.returncode == 2 and "RuntimeError" not in line
    assert not (tmp_path / "index.parquet").exists()


def test_a_dask_address_without_a_port_is_checked_at_dasks_default_port() -> None:
    from eamm.errors import EammError
    from flows.runners import DASK_DEFAULT_PORT, make_task_runner

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", DASK_DEFAULT_PORT)) == 0:
            pytest.skip(f"something listens on port {DASK_DEFAULT_PORT} here")
    with pytest.raises(
        EammError, match=rf"tcp://127.0.0.1 \(runner\): .* 127.0.0.1:{DASK_DEFAULT_PORT}"
    ):
        make_task_runner("tcp://127.0.0.1", 1)


def test_evaluate_refuses_a_checkpoint_folder_as_out_and_damaged_judge_metrics(
    tmp_path: Path,
) -> None:
    """``--out models/fomm`` replaced the stage's training metrics.json with the report's
    (exit 0); a damaged judge metrics.json ended the run after every clip was scored with a
    JSONDecodeError naming no file. Both now stop before Prefect's server starts."""
    models, data = tmp_path / "models", tmp_path / "data"
    for name in ("fomm", "a2fd_finetune", "emotion_classifier"):  # present: checked for files
        (models / name).mkdir(parents=True)
        (models / name / "checkpoint.pt").write_bytes(b"x")
    for dataset in ("mead", "lrw"):
        (data / dataset / "processed").mkdir(parents=True)
        (data / dataset / "processed" / "manifest.parquet").touch()
    stage = models / "fomm"
    (stage / "metrics.json").write_text('{"step": 600}')
    args = ("evaluate", "--params", ROOT / "params.yaml", "--data-root", data)
    result, _ = eamm(*args, "--checkpoints", models, "--out", stage, cwd=tmp_path)
    assert_one_line_error(result, str(stage), "holds a training stage's checkpoint.pt")
    assert (stage / "metrics.json").read_text() == '{"step": 600}'
    judge = models / "emotion_classifier" / "metrics.json"
    judge.write_text('{"heldout/accuracy": 0.9')
    out = tmp_path / "reports"
    result, _ = eamm(*args, "--checkpoints", models, "--out", out, cwd=tmp_path)
    assert_one_line_error(result, str(judge), "not JSON")
    assert TEMPORARY_SERVER not in result.stderr
    judge.unlink()
    (out / "metrics.json").mkdir(parents=True)  # where the report writes a file
    result, _ = eamm(*args, "--checkpoints", models, "--out", out, cwd=tmp_path)
    assert_one_line_error(result, str(out / "metrics.json"), "a folder where the report writes")


def test_summary_outside_a_project_says_so(tmp_path: Path) -> None:
    result, _ = eamm("summary", cwd=tmp_path)
    assert_one_line_error(result, str(tmp_path), "not in an eamm project")


def test_summary_from_a_folder_inside_the_project_shows_its_outputs() -> None:
    """From docs/ the project's outputs are found (they were looked for under docs/data)."""
    result, _ = eamm("summary", cwd=ROOT / "docs")
    assert result.returncode == 0, result.stderr
    assert "evaluation report" in result.stdout


def test_summary_names_damaged_files_and_prints_the_rest(tmp_path: Path) -> None:
    """One damaged JSON file ended `eamm summary` with a JSONDecodeError naming no file (exit
    1, no table); a metrics.json without a loss showed "loss 0"."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    for stage, text in (("fomm", '{"step": 5}'), ("a2fd", "[1, 2]"), ("emotion", '{"step": 5,')):
        (tmp_path / "models" / stage).mkdir(parents=True)
        (tmp_path / "models" / stage / "metrics.json").write_text(text)
    (tmp_path / "data" / "sample").mkdir(parents=True)
    (tmp_path / "data" / "sample" / "summary.json").write_text("{}")
    result, _ = eamm("summary", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "step 5, loss -;" in " ".join(result.stdout.split())
    notes = result.stderr.splitlines()
    assert f"note: {tmp_path}/data/sample/summary.json: no 'clips' in it; left out of the " in (
        "\n".join(notes)
    )
    assert any("a2fd/metrics.json: cannot be read (a JSON list, not an object)" in n for n in notes)
    assert any("emotion/metrics.json: cannot be read (not JSON: " in n for n in notes)


@pytest.mark.fixtures
def test_preprocess_clip_runs_from_any_folder(tmp_path: Path, fixtures_dir: Path) -> None:
    """No params.yaml anywhere: the packaged defaults (eamm.config) apply."""
    result, _ = eamm("preprocess-clip", fixtures_dir / LRW_CLIP, "--out", "clip", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert TEMPORARY_SERVER not in result.stderr
    landmarks = next((tmp_path / "clip").glob("landmarks*.npy"))
    assert np.load(landmarks).shape[1:] == (68, 2)


@pytest.mark.slow
@pytest.mark.skipif(
    not (MODELS / "fomm" / "checkpoint.pt").is_file(), reason="no trained models (make demo)"
)
def test_generate_runs_from_any_folder_without_a_server(tmp_path: Path) -> None:
    """Outside the repository, checkpoints given, no params file: built-in settings, no server."""
    result, _ = eamm(
        "generate",
        *("--photo", PORTRAIT, "--audio", SPEECH / "001.m4a"),
        *("--checkpoints", MODELS, "--out", "talk.mp4"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert TEMPORARY_SERVER not in result.stderr
    videos = list(tmp_path.glob("talk*.mp4"))
    assert videos and all(video.stat().st_size for video in videos)


@pytest.mark.slow
def test_error_inside_a_flow_is_one_line(tmp_path: Path) -> None:
    """A failure the flow finds (an unreadable index) after Prefect's server started: no task
    or flow tracebacks, one line naming the file (was 2-4 tracebacks first)."""
    index = tmp_path / "index.parquet"
    index.write_text("not parquet")
    result, _ = eamm(
        "preprocess",
        *("lrw", "--out", tmp_path / "out", "--index", index, "--params", ROOT / "params.yaml"),
        cwd=ROOT,
    )
    assert TEMPORARY_SERVER in result.stderr  # it did get as far as the flow
    assert_one_line_error(result, str(index))
    # said once: not again as the flow run's final state (the API's log keeps that)
    assert sum(str(index) in line for line in result.stderr.splitlines()) == 1, result.stderr


def test_flow_params_are_checked_before_the_server_starts(tmp_path: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["preprocess_run"]["workers"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result, _ = eamm("preprocess", "lrw", "--out", "out", cwd=tmp_path)
    assert_one_line_error(result, "params.yaml", "preprocess_run.workers")
    assert TEMPORARY_SERVER not in result.stderr


def test_a_zero_batch_for_one_dataset_is_refused_before_the_server_starts(tmp_path):
    """``batch_size: {lrw: 0}`` started empty tasks without end (14,462 in two minutes)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["preprocess_run"]["batch_size"] = {"mead": 4, "lrw": 0}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result, _ = eamm("preprocess", "lrw", "--out", "out", cwd=tmp_path)
    assert_one_line_error(result, "params.yaml", "preprocess_run.batch_size.lrw")
    assert TEMPORARY_SERVER not in result.stderr
    negative, _ = eamm("preprocess", "lrw", "--out", "out", "--workers", "-1", cwd=tmp_path)
    assert negative.returncode == 2 and "Invalid value for '--workers'" in negative.stderr
    assert TEMPORARY_SERVER not in negative.stderr


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("stepz", 5, "unknown key train_fomm.stepz (a typo?)"),
        ("lr", "fast", "valid number"),
    ],
)
def test_a_stage_section_is_checked_before_the_server_starts(tmp_path, key, value, reason):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train_fomm"][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result, _ = eamm("train", "train_fomm", cwd=tmp_path)
    assert_one_line_error(result, "params.yaml", f"train_fomm.{key}", reason)
    assert TEMPORARY_SERVER not in result.stderr and "Task run" not in result.stderr


def test_a_missing_upstream_checkpoint_stops_before_the_server_starts(tmp_path: Path) -> None:
    models = tmp_path / "models"
    result, _ = eamm("train", "train_emotion", "--models-root", models, cwd=ROOT)
    line = assert_one_line_error(result, str(models / "fomm" / "checkpoint.pt"))
    assert "eamm train train_fomm --models-root" in line
    assert TEMPORARY_SERVER not in result.stderr


def test_eamm_recipe_without_vgg_weights_stops_before_the_server_starts(tmp_path: Path) -> None:
    """``recipe: eamm`` with a VGG19 path that is not there (offline, the same path as a failed
    download): refused before Prefect's server starts, not inside the flow (issue 13, item 5)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["recipe"] = "eamm"
    params["model"]["perceptual"]["vgg_weights"] = str(tmp_path / "vgg19.pth")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result, _ = eamm("train", "train_fomm", "--models-root", MODELS, cwd=tmp_path)
    assert_one_line_error(result, "vgg19.pth", "model.perceptual.vgg_weights does not exist")
    assert TEMPORARY_SERVER not in result.stderr


@pytest.mark.parametrize(
    ("setting", "missing"),
    [
        ("syncnet_weights", "weights/syncnet_v2.model"),
        ("fid_weights", "weights/pt_inception-2015-12-05-6726825d.pth"),
        ("datasets", "manifest.parquet"),
    ],
)
def test_evaluate_inputs_are_checked_before_the_server_starts(
    tmp_path: Path, setting: str, missing: str
) -> None:
    """A SyncNet or FID weights path or a manifest that is not there: one line naming the file
    and the setting, before models load or Prefect's server starts (issue 14)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    weights = setting.endswith("_weights")
    if weights:
        params["evaluate"][setting] = str(tmp_path / missing)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    data_root = ROOT / "data" if weights else tmp_path / "data"
    result, _ = eamm("evaluate", "--data-root", data_root, cwd=tmp_path)
    assert_one_line_error(result, missing, f"evaluate.{setting}")
    assert TEMPORARY_SERVER not in result.stderr


def test_a_folder_named_in_other_bytes_than_utf8_is_refused_at_once(tmp_path: Path) -> None:
    raw = Path(os.fsdecode(bytes(tmp_path) + b"/raw_\xff"))  # a Latin-1 disk's 'raw_ÿ'
    (raw / "lipread_mp4").mkdir(parents=True)
    for args, option in (
        (("index", "lrw", "--raw", raw, "--out", "index.parquet"), "--raw"),
        (("preprocess", "lrw", "--raw", tmp_path, "--out", raw / "processed"), "--out"),
    ):
        result, _ = eamm(*args, "--params", ROOT / "params.yaml", cwd=tmp_path)
        line = assert_one_line_error(
            result, "raw_\\xff", f"the path is not UTF-8; rename it ({option})"
        )
        # was a UnicodeEncodeError writing the index, after the walk
        assert TEMPORARY_SERVER not in result.stderr, line


def test_evaluate_without_checkpoints_stops_before_the_server_starts(tmp_path: Path) -> None:
    (tmp_path / "models" / "fomm").mkdir(parents=True)
    for dataset in ("mead", "lrw"):  # present: the checkpoints are checked next
        (tmp_path / "data" / dataset / "processed").mkdir(parents=True)
        (tmp_path / "data" / dataset / "processed" / "manifest.parquet").touch()
    result, _ = eamm(
        "evaluate", "--checkpoints", "models", "--params", ROOT / "params.yaml", cwd=tmp_path
    )
    assert_one_line_error(result, "models/fomm/checkpoint.pt", "does not exist (--checkpoints)")
    assert TEMPORARY_SERVER not in result.stderr


@pytest.fixture(scope="module")
def own_inputs(tmp_path_factory) -> dict[str, Path]:
    """A portrait, a second of speech, an empty raw LRW tree and an empty checkpoint folder,
    made here: a clean clone has no data/ or models/ until `make demo`."""
    from eamm.audio import write_wav_s16
    from eamm.sample.dataset import write_portrait
    from eamm.sample.voice import synth_speech

    root = tmp_path_factory.mktemp("own")
    (root / "raw" / "lipread_mp4").mkdir(parents=True)
    (root / "models").mkdir()
    return {
        "photo": write_portrait(root / "portrait.png"),
        "speech": write_wav_s16(synth_speech(1.0, 16000, seed=0).samples, root / "speech.wav"),
        "raw": root / "raw",
        "models": root / "models",
    }


@pytest.mark.parametrize(
    ("command", "out", "option"),
    [
        ("preprocess-clip", "taken", "--out"),
        ("generate", "taken/o.mp4", "--out"),
        ("index", "taken/i.parquet", "--out"),
        ("evaluate", "taken", "--out"),
    ],
)
def test_an_out_path_blocked_by_a_file_is_refused_and_the_file_kept(
    tmp_path, own_inputs, command, out, option
):
    args = {
        "preprocess-clip": ["preprocess-clip", own_inputs["speech"]],
        "generate": ["generate", "--photo", own_inputs["photo"], "--audio", own_inputs["speech"]],
        "index": ["index", "lrw", "--raw", own_inputs["raw"], "--params", ROOT / "params.yaml"],
        "evaluate": ["evaluate", "--params", ROOT / "params.yaml"],
    }[command]
    if command == "generate":
        args += ["--checkpoints", own_inputs["models"]]
    taken = tmp_path / "taken"
    taken.write_text("a user's file\n")
    result, _ = eamm(*args, "--out", tmp_path / out, cwd=tmp_path)
    line = assert_one_line_error(result, f"({option})")
    assert "is a file" in line
    assert taken.read_text() == "a user's file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


@pytest.mark.parametrize(
    ("args", "folder", "holder"),
    [
        (["train", "train_fomm"], "models/fomm", "training of train_fomm"),
        (["evaluate", "--out", "reports"], "reports", "evaluation"),
    ],
)
def test_a_second_run_on_a_held_folder_stops_at_once(tmp_path, args, folder, holder):
    """Two trainings of a stage would overwrite each other's checkpoints (a mixed run when
    their params differ), two evaluations each other's report: the second stops, naming the
    first, before Prefect starts."""
    from eamm.folder_lock import folder_lock

    with folder_lock(tmp_path / folder, holder):
        result, _ = eamm(*args, "--params", ROOT / "params.yaml", cwd=tmp_path)
    line = assert_one_line_error(result, folder, f"another {holder} is using this folder")
    assert f"pid {os.getpid()}" in line
    assert TEMPORARY_SERVER not in result.stderr


def test_manifest_commands_take_the_processed_folder_and_name_an_index(tmp_path: Path) -> None:
    from eamm.datasets.base import DatasetIndex
    from eamm.datasets.index_io import write_index
    from eamm.manifest import write_manifest

    processed = tmp_path / "processed"
    row = {"clip_id": "train/A/A_00001", "dataset": "lrw", "split": "train", "status": "ok"}
    row |= {"word": "A", "utterance": "00001", "video_path": "lipread_mp4/A/train/A_00001.mp4"}
    write_manifest([row], processed / "manifest.parquet")
    result, _ = eamm("manifest", "summary", processed, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"ok": 1' in result.stdout
    write_index(DatasetIndex("lrw", str(tmp_path), [], []), tmp_path / "index.parquet")
    result, _ = eamm("manifest", "summary", tmp_path / "index.parquet", cwd=tmp_path)
    assert "a dataset index (eamm index), not a manifest" in assert_one_line_error(result)
    result, _ = eamm("manifest", "validate", tmp_path, cwd=tmp_path)
    assert "a folder without manifest.parquet" in assert_one_line_error(result)


def test_paths_print_as_given(tmp_path):
    """Paths were read as rich markup: a folder named ``a[/]b`` ended `eamm index`,
    `manifest validate` and `eamm summary` in "error: MarkupError" (exit 1, after the work was
    done), and ``c[bold]d`` printed as ``cd``, a path that does not exist; a long one was
    broken over two lines at the terminal's width."""
    from eamm.manifest import write_manifest

    for name in ("a[/]b", "c[bold]d", "long" * 30):
        folder = tmp_path / name
        write_manifest([], folder / "manifest.parquet")
        result, _ = eamm("manifest", "validate", folder, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{folder / 'manifest.parquet'}: valid"
