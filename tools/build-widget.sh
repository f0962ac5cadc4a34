#!/usr/bin/env bash
# Build the live view's front end: widgets/ (source, npm packages pinned by package-lock.json)
# -> petri_nb/notebook/widgets/vmview.js (one ES module with noVNC and xterm.js bundled in) and vmview.css.
# The built files are committed; tests/test_widget_bundle.py checks they match a fresh build.
# Usage: tools/build-widget.sh [OUTDIR]   (default petri_nb/notebook/widgets)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-petri_nb/notebook/widgets}")
mkdir -p "$out"
cd widgets
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
banner="// petri_nb live view, built by tools/build-widget.sh from widgets/ - do not edit.
// Bundles noVNC $(node -p 'require("./node_modules/@novnc/novnc/package.json").version') (MPL-2.0, https://github.com/novnc/noVNC)
// and xterm.js $(node -p 'require("./node_modules/@xterm/xterm/package.json").version') (MIT, https://github.com/xtermjs/xterm.js)."
node_modules/.bin/esbuild vmview.js --bundle --format=esm --minify --target=es2022 \
    --legal-comments=inline --banner:js="$banner" --log-level=warning --outfile="$out/vmview.js"
cat src/vmview.css node_modules/@xterm/xterm/css/xterm.css > "$out/vmview.css"
