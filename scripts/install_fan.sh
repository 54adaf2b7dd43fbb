#!/usr/bin/env bash
# Install the optional face-alignment (FAN) backend into the given interpreter's environment.
# face-alignment requires opencv-python, a second distribution of the same `cv2` package that
# would overwrite opencv-contrib-python's files. We let pip install it, then remove it and
# reinstall the pinned opencv-contrib-python so exactly one working cv2 remains.
set -euo pipefail
PY=${1:-.venv/bin/python}
cd "$(dirname "$0")/.."
contrib=$(grep -i '^opencv-contrib-python==' constraints.txt | cut -d= -f3)
"$PY" -m pip install -q -c constraints.txt 'face-alignment>=1.4,<2'
for dist in opencv-python opencv-python-headless; do
  if "$PY" -m pip show -q "$dist" >/dev/null 2>&1; then
    "$PY" -m pip uninstall -q -y "$dist"
  fi
done
"$PY" -m pip install -q --force-reinstall --no-deps "opencv-contrib-python==$contrib"
"$PY" - <<'PYEOF'
import importlib.metadata as md

import cv2
import face_alignment  # noqa: F401

names = ("opencv-python", "opencv-contrib-python", "opencv-python-headless",
         "opencv-contrib-python-headless")
found = []
for name in names:
    try:
        md.version(name)
        found.append(name)
    except md.PackageNotFoundError:
        pass
assert found == ["opencv-contrib-python"], f"OpenCV distributions installed: {found}"
assert hasattr(cv2, "xfeatures2d"), "cv2 lacks contrib modules"
print(f"face-alignment installed; cv2 {cv2.__version__} from opencv-contrib-python only")
PYEOF
