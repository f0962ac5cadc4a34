"""The live view in a real browser: JupyterLab on loopback, Debian's chromium driven by Playwright.

The notebook launches tmk and displays it; the test drives the page like a user
(Run All, click reset, type on the canvas) and checks the kernel's side through a
second client on the same kernel (the kernel's own ``vm.timeline()``/console).
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
from PIL import Image, ImageChops, ImageStat

from tests.conftest import wait_until

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EVIL = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>"

CELLS = [
    "import petri_nb\nvm = petri_nb.launch('tmk', name='live')\nvm",
    f"vm.console.write({('echo ' + EVIL + chr(10))!r})\nvm.console.expect('pwned=2</script>')",
]


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


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "live.ipynb")
    # Start the notebook's kernel without asking, and no news toast over the page.
    settings = tmp_path / "settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"autoStartDefaultKernel": true}')
    (settings / "apputils-extension").mkdir()
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
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


def test_the_live_view_in_jupyterlab_shows_the_screen_and_drives_the_vm(lab: Lab, page, page_log, tmp_path: Path):
    page.goto(lab.url("/lab/tree/live.ipynb"))
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    # Run All before the kernel is connected would be lost: wait for Lab to show it idle.
    page.wait_for_function("() => document.body.innerText.includes('| Idle')", timeout=60_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()
    screen = page.wait_for_selector(".petri-vmview-screen[data-seq]", timeout=60_000)
    page.wait_for_function("() => document.querySelector('.petri-vmview-console').textContent.includes('pwned=2')",
                           timeout=30_000)
    client = kernel_client(lab, tmp_path)
    try:
        # The canvas shows the guest's framebuffer: same pixels as vm.screenshot().
        shot = tmp_path / "shot.png"
        run_in_kernel(client, f"vm.screenshot().save({str(shot)!r})")
        canvas = canvas_image(page)
        assert canvas.size == (720, 400)
        diff = ImageStat.Stat(ImageChops.difference(canvas, Image.open(shot).convert("RGB"))).mean
        assert max(diff) < 1.0, diff

        # Guest text is shown as text: no element, no script run.
        console = page.locator(".petri-vmview-console")
        assert EVIL in console.text_content()
        assert page.locator(".petri-vmview img, .petri-vmview script").count() == 0
        assert page.evaluate("() => window.__pwned") is None

        # Typing on the focused canvas reaches the guest console; the focus is visible.
        screen.click()
        assert page.evaluate("() => document.activeElement.classList.contains('petri-vmview-screen')")
        assert page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") == "solid"
        page.keyboard.type("echo hi")
        page.keyboard.press("Enter")
        wait_until(lambda: "echo hi" in run_in_kernel(client, "print(vm.console.text)"), timeout=20,
                   what="typed text on the guest console")
        assert len(page.locator(".jp-Notebook .jp-Cell").all()) == len(CELLS)  # keys did not reach Lab

        # A guest halt shows in the status bar.
        page.keyboard.type("poweroff")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelector('.petri-vmview-state').textContent === 'halted'",
                               timeout=20_000)
        assert "POWER_OFF" in page.locator(".petri-vmview-halt").text_content()

        # The screenshot button downloads the screen as a PNG.
        with page.expect_download() as download:
            page.click(".petri-vmview-button[data-action=screenshot]")
        assert download.value.suggested_filename == "live.png"
        with Image.open(download.value.path()) as png:
            assert png.format == "PNG" and png.size == (720, 400)

        # The reset button goes through AsyncVm.reset(): a reset() row on the timeline.
        page.click(".petri-vmview-button[data-action=reset]")
        wait_until(lambda: "reset()" in run_in_kernel(client, "print(list(vm.timeline()['kind']))"), timeout=20,
                   what="reset() on the kernel's timeline")
        page.wait_for_function("() => document.querySelector('.petri-vmview-state').textContent === 'running'")

        # The view keeps updating while a cell blocks in a Vm call (acks wait, frames still flow).
        run_in_kernel(client, "vm.console.write('gfx\\n'); vm.console.expect('gfx 1024x768')")
        page.wait_for_function("() => document.querySelector('.petri-vmview-screen').width === 1024", timeout=20_000)
        before = int(screen.get_attribute("data-seq"))
        msg_id = client.execute("import time; vm.wait_for_halt_or(lambda: time.sleep(3))")
        # Frames arrive during the blocking call (well before it ends after 3 s).
        page.wait_for_function(f"() => +document.querySelector('.petri-vmview-screen').dataset.seq >= {before + 3}",
                               timeout=2500)
        reply = client.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["status"] == "ok"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "live_view.png"), full_page=True)
    finally:
        run_in_kernel(client, "vm.teardown()")
        client.stop_channels()
