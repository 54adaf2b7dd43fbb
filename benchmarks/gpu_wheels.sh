#!/usr/bin/env bash
# The Python wheels a lent GPU machine lacks for benchmarks/gpu_checks.sh, downloaded here (PyPI)
# into three folders: .whl_a (mediapipe) and .whl_b (LiteRT, pydantic, soundfile, pooch, and
# mediapipe's protobuf 4 and flatbuffers, whatever the image's) fit one device call's 64 MiB
# together, .whl_c (PyAV) another. Versions: this venv's (constraints.txt). The machine's image
# already has torch, numpy, OpenCV, pyarrow, SciPy, PyYAML, scikit-image, matplotlib.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
pyver=${PYVER:-3.12}  # the GPU image's Python
prefix=${PREFIX:-.}
version() { "$py" -c "import importlib.metadata as m; print(m.version('$1'))"; }
fetch() {
    local dest=$prefix/$1
    shift
    mkdir -p "$dest"
    local pins=()
    for name in "$@"; do pins+=("$name==$(version "$name")"); done
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dest" "${pins[@]}"
}
fetch .whl_a mediapipe
fetch .whl_b ai-edge-litert pydantic pydantic-core annotated-types typing-inspection soundfile \
    pooch platformdirs protobuf flatbuffers
fetch .whl_c av
du -sh "$prefix"/.whl_[abc]
