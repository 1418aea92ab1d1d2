#!/usr/bin/env bash
# Create .venv with the pinned CPU torch (2.13.0) and the SDK with all extras needed for train/export/serve/tests.
# GPU users: install your CUDA torch first, or set SEMISEG_TORCH to the torch requirement you want.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "${SEMISEG_TORCH:-torch==2.13.0}"
python -m pip install -q -e ".[train,export,serve,pretrained,dev]"
