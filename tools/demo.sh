#!/usr/bin/env bash
# The main job: set up, then boot the embedded tiny test kernel through every halt reason.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/petri-nb demo --out "${1:-out/demo}"
