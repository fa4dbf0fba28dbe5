#!/usr/bin/env bash
# The declared lower bounds hold: install napari-deep-superres with the lowest versions its
# pyproject.toml allows for its direct dependencies (uv --resolution lowest-direct), at the
# lowest Python it supports, and run the smoke test (.ci/smoke.py): upscale a TIFF to
# .ome.zarr, ONNX export with both exporters, a bioimage.io package checked by `bioimageio test`.
# The install downloads torch 2.5 with its CUDA libraries (~3 GB) once (uv's cache keeps them).
#   bash .ci/lowest.sh            (or: make test-lowest)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON_VERSION="${LOWEST_PYTHON:-3.11}"   # = requires-python's lower bound in pyproject.toml
VENV="${LOWEST_VENV:-.venv-lowest}"
UV="${UV:-$(command -v uv || echo .venv/bin/uv)}"
grep -q "requires-python = \">=${PYTHON_VERSION}\"" pyproject.toml \
  || { echo "lowest.sh: requires-python in pyproject.toml is not >=${PYTHON_VERSION}; update LOWEST_PYTHON" >&2; exit 1; }
start=$(date +%s)
"$UV" venv -q --clear --python "$PYTHON_VERSION" "$VENV"
# the requirements read from pyproject.toml are the direct ones (installing "." would make them
# transitive, free to float above their bounds); then the package itself, built as a wheel
"$UV" pip install -q --python "$VENV/bin/python" --resolution lowest-direct -r pyproject.toml \
  --extra bioimageio --extra ome-zarr --extra onnx
"$UV" pip install -q --python "$VENV/bin/python" --no-deps --reinstall-package napari-deep-superres .
echo "lowest-direct install at Python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())'): $(( $(date +%s) - start )) s"
cd "$(mktemp -d)"   # the installed package, not the source tree
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$OLDPWD/$VENV/bin/python" "$OLDPWD/.ci/smoke.py"
echo "lowest-direct smoke test: $(( $(date +%s) - start )) s in all"
