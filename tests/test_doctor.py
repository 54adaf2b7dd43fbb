import os
import subprocess

from tests.conftest import ROOT, VENV_BIN


def run_doctor(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "eamm"), "doctor"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_doctor_reports_every_component():
    proc = run_doctor(dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("python", "torch", "ffmpeg", "ffprobe", "opencv", "mediapipe", "prefect", "dvc"):
        assert name in proc.stdout
    assert "face detection + face mesh load offline" in proc.stdout
    assert "2.13.0" in proc.stdout
    assert "opencv-contrib-python" in proc.stdout
    assert "DO_NOT_TRACK=1" in proc.stdout
    assert "core.analytics=false" in proc.stdout


def test_doctor_names_each_missing_tool_without_traceback():
    env = dict(os.environ, PATH=str(VENV_BIN), DO_NOT_TRACK="0")
    proc = run_doctor(env)
    assert proc.returncode == 1
    missing = [line for line in proc.stderr.splitlines() if line.startswith("missing: ")]
    assert [line.split(":")[1].strip() for line in missing] == ["ffmpeg", "ffprobe", "prefect"]
    assert "apt-get install ffmpeg" in missing[0]
    assert "Traceback" not in proc.stdout + proc.stderr
