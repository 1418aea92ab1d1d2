#!/usr/bin/env bash
# The README's main command: set up the environment, then train -> export -> infer on built-in data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
semiseg demo "$@"
