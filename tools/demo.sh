#!/usr/bin/env bash
# The main job: set up, then run the quickstart notebook headless on the embedded tiny test kernel
# and write it as HTML plus its PNG figures (default folder: out/quickstart).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
out="${1:-out/quickstart}"
.venv/bin/petri-nb report quickstart --out "$out"
echo
echo "open the HTML report in a browser: $(realpath "$out")/quickstart.html"
root_flag=""
[ "$(id -u)" -ne 0 ] || root_flag=" --allow-root"  # JupyterLab refuses to run as root without it
echo "open the notebooks in JupyterLab:  .venv/bin/jupyter lab notebooks/$root_flag"
