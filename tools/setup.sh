#!/usr/bin/env bash
# Set up everything petri_nb needs on a fresh Debian 12 machine: the Debian packages
# (QEMU, a compiler for the test kernel, Chromium for browser tests) and a venv in .venv.
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(qemu-system-x86 gcc binutils python3-venv python3-dev chromium fonts-dejavu-core util-linux busybox-static qemu-utils libc6-dev gdb
    ovmf mtools dosfstools syslinux fdisk swtpm tesseract-ocr tesseract-ocr-eng)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# npm (with node) rebuilds the live view's bundle in tests/test_widget_bundle.py; the bundle
# ships prebuilt, so any node >= 18 with npm will do (e.g. NodeSource's, which provides npm).
command -v npm >/dev/null || missing+=(npm)
# The Linux guest fetches Debian's current kernel with `apt-get download`: the archive drops
# old kernel versions, so package lists older than a day are refreshed.
fresh_lists=$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n 1)
if ((${#missing[@]})) || [ -z "$fresh_lists" ]; then
    echo "setup: refreshing Debian package lists"
    $sudo apt-get update -qq
fi
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.petri_nb-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing petri_nb and its test dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    touch "$stamp"
fi
# A wheel install puts this file in <prefix>/etc/jupyter (pyproject data-files), which enables
# the view server in every Jupyter server of the environment; editable installs skip data
# files, so the dev venv gets the same file here.
conf=.venv/etc/jupyter/jupyter_server_config.d/petri_nb.json
if ! cmp -s jupyter-config/jupyter_server_config.d/petri_nb.json "$conf"; then
    install -D -m 644 jupyter-config/jupyter_server_config.d/petri_nb.json "$conf"
fi
