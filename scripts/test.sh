#!/usr/bin/env bash
# The README's test command: set up the environment, then run the test suite (slow tests skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export PAGER=cat OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
python -m pytest tests "$@"
