"""The optional FAN backend's install path must leave exactly one working cv2."""

from __future__ import annotations

import subprocess
import sys
import sysconfig

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_install_fan_keeps_one_opencv(tmp_path):
    # A throwaway venv that sees the project venv's packages through a .pth file, so the
    # install script changes only the throwaway one.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (tmp_path / "venv" / site.split(str(venv) + "/", 1)[1] / "project.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install_fan.sh"), str(python)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "from opencv-contrib-python only" in proc.stdout
    check = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "face-alignment==" in check.replace("_", "-")
    assert "opencv-python==" not in check
    probe = subprocess.run(
        [str(python), "-c", "import cv2, face_alignment; print(cv2.__file__)"],
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr
    assert str(venv) in probe.stdout  # the reinstalled contrib build is the one imported
