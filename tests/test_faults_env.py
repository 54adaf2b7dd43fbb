"""Users' environments (a hunt's findings): a Prefect home that cannot be written, a Prefect
server that does not answer or goes away, a broken ffmpeg, file names ffmpeg reads as options,
symbolic links as output folders, names too long for the file system."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from eamm.atomic import real_folder, replace_folder
from eamm.audio import write_wav_s16
from eamm.errors import EammError
from eamm.generate import require_short_names
from eamm.media import probe
from tests.conftest import ROOT, VENV_BIN


def run_eamm(*args: str | Path, env: dict[str, str], cwd: Path = ROOT, timeout: float = 120):
    full = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "EAMM_DEBUG")}
    start = time.monotonic()
    result = subprocess.run(
        [str(VENV_BIN / "eamm"), *map(str, args)],
        cwd=cwd,
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result, time.monotonic() - start


def one_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    return line


def test_a_prefect_home_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    """A file as PREFECT_HOME (or a read-only clone's .prefect) made every flow command print
    a uvicorn traceback every few seconds, forever: Prefect restarts a server that cannot
    open its database without end."""
    home = tmp_path / "home"
    home.write_text("a file")
    result, seconds = run_eamm(
        "index", "lrw", "--raw", tmp_path, "--out", tmp_path / "i.parquet",
        env={"PREFECT_HOME": str(home)},
    )  # fmt: skip
    line = one_error(result)
    assert f"{home}: Prefect's home folder cannot be written (a file, not a folder)" in line
    assert seconds < 30


def test_a_prefect_server_that_never_answers_is_named_in_seconds(tmp_path: Path) -> None:
    """A server that accepts connections and never replies held a command for 7 minutes of
    Prefect's retries before the one line."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: [accepted.append(listener.accept()[0]) for _ in range(8)],
                     daemon=True).start()  # fmt: skip
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/api"
    try:
        result, seconds = run_eamm(
            "index", "lrw", "--raw", tmp_path, "--out", tmp_path / "i.parquet",
            env={"PREFECT_API_URL": url},
        )  # fmt: skip
    finally:
        listener.close()
    assert f"PREFECT_API_URL {url}: no Prefect server answers (timed out)" in one_error(result)
    assert seconds < 40


def test_a_server_lost_mid_run_and_a_refused_client_are_named() -> None:
    import httpx

    from flows.cli import _named_error

    err = httpx.ConnectError("[Errno 111] Connection refused")
    line = _named_error(err, str(err))
    assert "the Prefect server stopped answering during the run" in line
    assert "what finished is kept" in line
    response = httpx.Response(401, request=httpx.Request("GET", "http://x/api/health"))
    refused = httpx.HTTPStatusError("401 Unauthorized", request=response.request, response=response)
    assert "set PREFECT_API_AUTH_STRING" in _named_error(refused, "401 Unauthorized")


def test_running_out_of_memory_is_named() -> None:
    """Under a memory limit (ulimit -v 1.7-1.9 GB) a run ended in "error: RuntimeError: can't
    start new thread" (exit 1), and a clip job failing so was recorded ``failed`` for good."""
    from eamm.preprocess.errors import run_fault
    from flows.cli import _named_error

    thread = RuntimeError("can't start new thread")
    assert _named_error(thread, str(thread)) == (
        "out of memory (can't start new thread); what finished is kept: raise the memory "
        "limit (ulimit -v) or use fewer workers, and run it again"
    )
    assert _named_error(MemoryError(), "").startswith("out of memory (MemoryError); ")
    assert run_fault(thread) == "can't start new thread"


def test_a_broken_ffmpeg_is_a_failed_doctor_row_not_a_crash(tmp_path: Path) -> None:
    """An ffmpeg that exits 1 on ``-version`` ended `eamm doctor` with a CalledProcessError
    and no table."""
    (tmp_path / "ffmpeg").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "ffmpeg").chmod(0o755)
    result, _ = run_eamm("doctor", env={"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"ffmpeg: {tmp_path / 'ffmpeg'}: `-version` exited 1 (a broken install?)" in (
        result.stdout + result.stderr
    )


def test_media_named_like_an_option_or_a_protocol_is_read(tmp_path: Path, monkeypatch) -> None:
    """A relative `-a.wav` was passed to ffprobe as an option ("Missing argument for option
    'a.wav'"): a valid file blamed as unreadable."""
    monkeypatch.chdir(tmp_path)
    for name in ("-a.wav", "b:c.wav"):
        write_wav_s16(np.zeros(1600, np.float32), Path(name), 16000)
        info = probe(name)
        assert info.duration_s == pytest.approx(0.1, abs=0.01)


def test_an_output_folder_given_through_a_link_is_replaced_where_it_points(tmp_path: Path):
    """`preprocess-clip --out <link to a folder>` failed with "Is a directory" after the whole
    clip and left an empty `.<name>.*.old` folder beside the link each time."""
    target = tmp_path / "real"
    target.mkdir()
    (target / "old.txt").write_text("old")
    link = tmp_path / "link"
    link.symlink_to(target)
    out = real_folder(link)
    staged = tmp_path / ".real.staged"
    staged.mkdir()
    (staged / "new.txt").write_text("new")
    replace_folder(staged, out)
    assert link.is_symlink() and [p.name for p in link.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_names_too_long_for_the_file_system_are_refused_first(tmp_path: Path) -> None:
    """A 250-byte --out failed after the whole generation: `<out>_neutral.mp4` was too long."""
    require_short_names(tmp_path / f"{'b' * 200}.mp4")
    with pytest.raises(EammError, match=r"too long a name \(--out\): b+_neutral\.mp4 and its"):
        require_short_names(tmp_path / f"{'b' * 240}.mp4")


def test_a_deployments_workers_below_one_is_refused() -> None:
    from flows.preprocess import run_preprocess

    with pytest.raises(EammError, match=r"workers -3: give 1 or more"):
        run_preprocess("lrw", "unused", workers=-3)


def test_summary_names_a_root_that_is_not_there(tmp_path: Path) -> None:
    result, _ = run_eamm("summary", "--root", tmp_path / "nope", env={})
    assert one_error(result) == f"error: {tmp_path / 'nope'}: folder does not exist (--root)"


def test_a_bad_summary_path_stops_before_preprocessing(tmp_path: Path) -> None:
    """`eamm preprocess --summary <below a file>` processed every clip, then failed with a
    FileExistsError naming no option."""
    blocker = tmp_path / "afile"
    blocker.write_text("keep\n")
    result, seconds = run_eamm(
        "preprocess", "lrw", "--raw", tmp_path, "--out", tmp_path / "out",
        "--summary", blocker / "s.json", env={},
    )  # fmt: skip
    assert "(--summary)" in one_error(result) and seconds < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_generation_from_the_package_folder_finds_the_projects_checkpoints(
    tmp_path: Path, monkeypatch
) -> None:
    """Run from the repository's eamm/, `./models` is the networks' Python package: it was
    taken for the checkpoint folder ("eamm/models/fomm/checkpoint.pt: does not exist")."""
    from eamm.runtime import checkpoints_folder

    project = tmp_path / "project"
    (project / "models" / "fomm").mkdir(parents=True)
    (project / "models" / "fomm" / "checkpoint.pt").write_bytes(b"x")
    (project / "dvc.yaml").write_text("stages: {}\n")
    (project / "eamm" / "models").mkdir(parents=True)  # a package, no checkpoints
    monkeypatch.delenv("EAMM_PROJECT_ROOT", raising=False)
    monkeypatch.chdir(project / "eamm")
    assert checkpoints_folder(None) == project / "models"
