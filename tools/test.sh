#!/usr/bin/env bash
# Set up, then run the whole test suite (slow tests included) against real QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
.venv/bin/ruff check petri_nb tests bench
exec .venv/bin/python -m pytest -m "slow or not slow" "$@"
