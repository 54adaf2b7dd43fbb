#!/usr/bin/env bash
# Make the project runnable on a fresh Debian/Ubuntu machine: ffmpeg/ffprobe and .venv.
# Idempotent and quick when nothing changed (a stamp records the installed inputs).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed

if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing ffmpeg (apt-get)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then
    echo "bootstrap: installing ffmpeg (sudo apt-get)"
    sudo apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  else
    echo "bootstrap: ffmpeg/ffprobe missing: install them with 'sudo apt-get install ffmpeg' (or 'brew install ffmpeg'), then re-run" >&2
    exit 1
  fi
fi

if ! command -v "$PYTHON" >/dev/null; then
  echo "bootstrap: $PYTHON not found: install Python 3.10-3.12 ('sudo apt-get install python3 python3-venv')" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))'; then
  echo "bootstrap: $PYTHON is $("$PYTHON" -V 2>&1); Python 3.10-3.12 is required (set PYTHON=python3.11)" >&2
  exit 1
fi

inputs=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$inputs" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV" || {
    echo "bootstrap: cannot create $VENV: install the venv module ('sudo apt-get install python3-venv')" >&2
    exit 1
  }
fi
echo "bootstrap: installing Python dependencies into $VENV (first run takes a few minutes)"
"$VENV/bin/python" -m pip install -q --upgrade pip
# constraints.txt pins every transitive version we test with (torch==2.13.0 CPU build included).
"$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[dev,dask,bench]'
# syncnet_python's reference code, for the SyncNet cross-check test only: without its deps (they
# name torchvision, whose PyPI build is CUDA's and does not import with the CPU torch).
"$VENV/bin/python" -m pip install -q -c constraints.txt --no-deps syncnet-python scenedetect
# pytorch-fid's network, for the FID cross-check test only: it builds it through torchvision (whose
# PyPI build does not import with the CPU torch), so both go into a folder outside site-packages,
# where the test imports torchvision's pure-Python model code alone.
"$VENV/bin/python" -m pip install -q -c constraints.txt --no-deps --upgrade \
  --target "$VENV/fid-reference" torchvision pytorch-fid
echo "$inputs" > "$STAMP"
