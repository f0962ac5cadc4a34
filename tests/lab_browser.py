"""JupyterLab on loopback and Debian's chromium driven by Playwright: fixtures for the browser tests.

Test modules set ``CELLS`` (the notebook's code cells) and may set ``VIEW_SERVER = False``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from PIL import Image

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EVIL = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, root: Path, port: int, token: str, proc: subprocess.Popen[bytes]) -> None:
        self.root, self.port, self.token, self.proc = root, port, token, proc

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}?token={self.token}"

    def api(self, path: str) -> object:
        with urllib.request.urlopen(self.url(path), timeout=5) as r:
            return json.load(r)

    def post(self, path: str) -> object:
        req = urllib.request.Request(self.url(path), data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)


@pytest.fixture
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """JupyterLab on loopback with the test module's ``CELLS`` as live.ipynb; petri_nb's view
    server is on (as installed) unless the module sets ``VIEW_SERVER = False``."""
    from conftest import wait_until  # here: conftest imports this module's fixtures

    root = tmp_path / "root"
    root.mkdir()
    cells = request.module.CELLS
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "live.ipynb")
    # Start the notebook's kernel without asking, and no news toast over the page.
    settings = tmp_path / "settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"autoStartDefaultKernel": true}')
    (settings / "apputils-extension").mkdir()
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    if not getattr(request.module, "VIEW_SERVER", True):  # the user config dir overrides the installed one
        (tmp_path / "cfg").mkdir()
        (tmp_path / "cfg" / "jupyter_server_config.json").write_text(
            json.dumps({"ServerApp": {"jpserver_extensions": {"petri_nb.server": False}}}))
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg")}
    log = open(tmp_path / "lab.log", "wb")  # closed in teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser", "--ip", "127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         f"--LabApp.user_settings_dir={tmp_path / 'settings'}", "--ServerApp.port_retries=0"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    server = Lab(root, port, token, proc)

    def up() -> bool:
        try:
            server.api("/api/status")
            return True
        except OSError:
            assert proc.poll() is None, (tmp_path / "lab.log").read_text()
            return False

    try:
        wait_until(up, timeout=60, what="JupyterLab to answer")
        yield server
    finally:
        try:
            for kernel in server.api("/api/kernels"):  # type: ignore[union-attr]
                req = urllib.request.Request(server.url(f"/api/kernels/{kernel['id']}"), method="DELETE")
                urllib.request.urlopen(req, timeout=10).close()
        except OSError:
            pass
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture
def page(lab: Lab) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            yield pg
        finally:
            browser.close()


def kernel_client(lab: Lab, tmp_path: Path):
    from jupyter_client import BlockingKernelClient

    kernels = lab.api("/api/kernels")
    assert len(kernels) == 1  # type: ignore[arg-type]
    client = BlockingKernelClient(connection_file=str(tmp_path / "runtime" / f"kernel-{kernels[0]['id']}.json"))
    client.load_connection_file()
    client.start_channels()
    client.wait_for_ready(timeout=30)
    return client


def run_in_kernel(client, code: str, timeout: float = 30) -> str:
    out: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = client.execute_interactive(code, output_hook=hook, timeout=timeout)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out)


def canvas_image(page) -> Image.Image:
    url = page.evaluate("() => document.querySelector('.petri-vmview-screen').toDataURL('image/png')")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


@pytest.fixture
def page_log(page) -> Iterator[list[str]]:
    """Browser console lines; on failure they and a page screenshot are kept in test-artifacts/."""
    lines: list[str] = []
    page.on("console", lambda m: lines.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: lines.append(f"pageerror: {e}"))
    yield lines
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "browser_console.log").write_text("\n".join(lines))
    page.screenshot(path=str(ARTIFACTS / "live_view_last.png"), full_page=True)


def lab_processes(lab: Lab) -> dict[str, int]:
    """pids of the Jupyter server, its kernel and the kernel's QEMU."""
    import psutil

    server = psutil.Process(lab.proc.pid)
    found = {"jupyter server": server.pid}
    for child in server.children(recursive=True):
        name = child.name()
        if name.startswith("qemu-system"):
            found["qemu"] = child.pid
        elif "python" in name and "kernel" not in found:
            found["kernel"] = child.pid
    return found


def cpu_percent_during(pids: dict[str, int], measure):  # type: ignore[no-untyped-def]
    """Run ``measure()``; return its result and each process's CPU use meanwhile (% of one core)."""
    import time

    import psutil

    procs = {name: psutil.Process(pid) for name, pid in pids.items()}
    before = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
    t0 = time.monotonic()
    result = measure()
    wall = time.monotonic() - t0
    return result, {name: round(100 * (sum(p.cpu_times()[:2]) - before[name]) / wall, 1) for name, p in procs.items()}
