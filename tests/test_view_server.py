"""The view server (petri_nb.server) in a real Jupyter server, against a real tmk VM.

A Jupyter server runs as a subprocess (same user, so the same run dirs); the test plays
the browser with plain websocket clients and checks the kernel-side VM (this process)
sees what the side channel did.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

import petri_nb
from petri_nb.server.rundirs import Refused, resolve
from tests.conftest import wait_until


class Server:
    def __init__(self, port: int, token: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.port, self.token, self.proc, self.log = port, token, proc, log

    def ws(self, view_id: str, kind: str, *, token: bool = True, quoted: bool = True) -> websocket.WebSocket:
        tail = urllib.request.quote(view_id, safe="") if quoted else view_id
        query = f"?token={self.token}" if token else ""
        return websocket.create_connection(f"ws://127.0.0.1:{self.port}/petri_nb/view/{tail}/{kind}{query}",
                                           timeout=10)

    def status(self, view_id: str, kind: str, **kw: bool) -> int:
        """The HTTP status of the websocket upgrade (101 when it was accepted)."""
        try:
            self.ws(view_id, kind, **kw).close()
            return 101
        except websocket.WebSocketBadStatusException as e:
            return e.status_code


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A Jupyter server with only the auto-enabled extensions (petri_nb.server among them)."""
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg")}
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--allow-root", "--no-browser", "--ip", "127.0.0.1",
             f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
             "--ServerApp.port_retries=0"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    srv = Server(port, token, proc, log_path)

    def up() -> bool:
        assert proc.poll() is None, log_path.read_text()
        try:
            url = f"http://127.0.0.1:{port}/petri_nb/view/ping?token={token}"
            with urllib.request.urlopen(url, timeout=2) as r:
                return json.load(r)["petri_nb_view"] >= 1
        except OSError:
            return False

    try:
        wait_until(up, timeout=60, what="the Jupyter server's petri_nb view server")
        yield srv
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def view_id(vm: petri_nb.Vm) -> str:
    return vm.aio.view_sockets["vnc"].parent.name


def control(ws: websocket.WebSocket, action: str, req: int = 1) -> dict:
    ws.send(json.dumps({"id": req, "action": action}))
    return json.loads(ws.recv())


def test_the_vnc_websocket_speaks_rfb_from_the_vms_own_socket(vm: petri_nb.Vm, server: Server):
    ws = server.ws(view_id(vm), "vnc")
    try:
        assert ws.recv() == b"RFB 003.008\n"  # QEMU's VNC greeting, raw bytes, binary frame
    finally:
        ws.close()


def test_an_unauthenticated_websocket_is_refused(vm: petri_nb.Vm, server: Server):
    assert server.status(view_id(vm), "vnc", token=False) == 403
    assert server.status(view_id(vm), "control", token=False) == 403
    with pytest.raises(urllib.request.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/petri_nb/view/ping", timeout=5)
    assert e.value.code == 403


def test_another_sites_page_cannot_use_the_login_cookie(vm: petri_nb.Vm, server: Server):
    """A browser sends the login cookie with any site's websocket: only our own origin may use it.
    (A token in the URL is not ambient, so Jupyter skips the origin check for it.)"""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"http://127.0.0.1:{server.port}/api/status?token={server.token}", timeout=5).close()
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    assert cookie, "the server set no login cookie"
    url = f"ws://127.0.0.1:{server.port}/petri_nb/view/{view_id(vm)}/control"
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(url, timeout=10, cookie=cookie, origin="http://evil.example")
    assert e.value.status_code == 403
    ours = websocket.create_connection(url, timeout=10, cookie=cookie, origin=f"http://127.0.0.1:{server.port}")
    ours.close()


def test_sockets_outside_this_users_run_dirs_are_refused(vm: petri_nb.Vm, server: Server, tmp_path: Path):
    rundir = vm.aio.view_sockets["vnc"].parent
    tmp = rundir.parent
    evil_link = tmp / f"petri_nb-link-{secrets.token_hex(4)}"
    evil_link.symlink_to(rundir)  # a symlink to a good run dir is still refused
    open_dir = tmp / f"petri_nb-open-{secrets.token_hex(4)}"
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o755)
    planted = socket.socket(socket.AF_UNIX)
    planted.bind(str(open_dir / "vnc.sock"))  # a socket in a dir others could have planted it in
    try:
        probes = ["..", "../..", f"{rundir.name}/../..", f"../{rundir.name}", "%2e%2e", "petri_nb-..",
                  "petri_nb-nosuchvm", "petri_nb-a\x00b", str(rundir), "qmp.sock", evil_link.name, open_dir.name]
        for probe in probes:
            for quoted in (True, False):
                code = server.status(probe, "vnc", quoted=quoted)
                assert code in (400, 403, 404), (probe, quoted, code)  # never 101
        assert server.status(rundir.name, "qmp") == 404  # only the view's sockets are routed at all
        for probe in (evil_link.name, open_dir.name, "petri_nb-nosuchvm", ".."):
            with pytest.raises(Refused):
                resolve(probe, "vnc")
        with resolve(rundir.name, "vnc") as sock:
            assert sock.rundir == rundir and os.path.samefile(sock.path, rundir / "vnc.sock")
        assert server.status(rundir.name, "vnc") == 101
    finally:
        planted.close()
        evil_link.unlink()
        (open_dir / "vnc.sock").unlink()
        open_dir.rmdir()


def test_the_control_channel_pauses_resumes_and_resets_and_the_kernel_records_it(vm: petri_nb.Vm, server: Server):
    ws = server.ws(view_id(vm), "control")
    try:
        t0 = time.monotonic()
        assert control(ws, "pause", 1) == {"id": 1, "ok": True, "error": ""}
        assert time.monotonic() - t0 < 0.5
        wait_until(lambda: vm.state == "paused", timeout=2, what="the kernel to see the view's pause")
        assert control(ws, "resume", 2)["ok"]
        wait_until(lambda: vm.state == "running", timeout=2, what="the kernel to see the view's resume")
        assert control(ws, "rm -rf", 3) == {"id": 3, "ok": False, "error": "unknown action"}
        assert control(ws, "query-status", 4)["ok"] is False  # QMP command names are not actions

        vm.console.write("poweroff\n")  # a halted VM: the view's reset restarts it
        halt = vm.wait_for_halt(timeout=10)
        assert halt.reason is petri_nb.HaltReason.POWER_OFF
        mark = len(vm.console.text)
        assert control(ws, "reset", 5)["ok"]
        wait_until(lambda: vm.state == "running", timeout=5, what="the kernel to see the view's reset")
        wait_until(lambda: "tmk: ready" in vm.console.text[mark:], timeout=10, what="tmk to boot again")
        kinds = list(vm.timeline()["kind"])
        assert "RESET" in kinds and "reset()" not in kinds  # QEMU's event, not a kernel call
        # Each button is named on the timeline, right before the events it caused.
        assert [k for k in kinds if k.startswith("view ")] == ["view pause", "view resume", "view reset"]
        assert kinds[kinds.index("view pause") + 1] == "STOP" and kinds[kinds.index("view reset") + 1] == "RESET"
        # After the view's reset, guest resets are halts again (the action was switched back).
        vm.console.write("reset\n")
        assert vm.wait_for_halt(timeout=10).reason is petri_nb.HaltReason.RESET
    finally:
        ws.close()


def test_no_qemu_or_view_server_socket_listens_on_tcp(vm: petri_nb.Vm, server: Server):
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    ours = [line for line in out.splitlines() if "qemu" in line]
    assert ours == []
    jupyter = [line for line in out.splitlines() if f"pid={server.proc.pid}," in line]
    assert jupyter and all(f"127.0.0.1:{server.port}" in line for line in jupyter), jupyter


def test_the_view_sockets_survive_a_restore_and_a_relaunch(vm: petri_nb.Vm):
    def greets(kind: str) -> bytes:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(vm.aio.view_sockets[kind]))
            return s.recv(12)

    vm.restore_state(vm.save_state())  # a new QEMU binds the same paths, then the old one quits
    assert greets("vnc") == b"RFB 003.008\n" and greets("control").startswith(b'{"QMP"')
    vm.update_command_line("quiet")
    vm.reset()
    assert greets("vnc") == b"RFB 003.008\n" and greets("control").startswith(b'{"QMP"')


def test_the_serial_websocket_shares_the_console_both_ways(vm: petri_nb.Vm, server: Server):
    ws = server.ws(view_id(vm), "serial")
    try:
        seen = b""
        while b"tmk: ready" not in seen:  # the scrollback first
            seen += ws.recv()
        ws.send_binary(b"echo from-the-pane\r")
        vm.console.expect("from-the-pane")  # the kernel's console saw it too
        while b"from-the-pane" not in seen:
            seen += ws.recv()
    finally:
        ws.close()


@pytest.mark.skipif(os.getuid() != 0, reason="switching to another uid needs root")
def test_another_user_cannot_connect_to_the_view_sockets(vm: petri_nb.Vm):
    probe = (
        "import socket, sys\n"
        "for path in sys.argv[1:]:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n"
        "        s.connect(path)\n"
        "        print('CONNECTED')\n"
        "    except PermissionError:\n"
        "        print('DENIED')\n"
    )
    paths = [str(p) for p in vm.aio.view_sockets.values()]
    assert len(paths) == 3 and all(Path(p).exists() for p in paths)
    out = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", probe, *paths],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["DENIED"] * 3


def test_a_vm_with_dots_in_its_name_gets_its_view_and_the_name_cannot_escape(server: Server):
    vm = petri_nb.launch("tmk", name="my.vm..")  # names are path-safe (live.claim_name); dots are allowed
    try:
        rundir = vm.aio.view_sockets["vnc"].parent
        with resolve(rundir.name, "vnc") as sock:
            assert sock.rundir == rundir and os.path.samefile(sock.path, rundir / "vnc.sock")
        ws = server.ws(rundir.name, "vnc")  # percent-encoded in the URL, as the browser does
        assert ws.recv() == b"RFB 003.008\n"
        ws.close()
        for probe in (f"{rundir.name}/../{rundir.name}", "petri_nb-../../etc", "petri_nb-x\x00"):
            with pytest.raises(Refused):
                resolve(probe, "vnc")
    finally:
        vm.teardown()


def test_force_off_quits_qemu_and_the_kernel_sees_the_vm_gone(vm: petri_nb.Vm, server: Server):
    ws = server.ws(view_id(vm), "control")
    try:
        assert control(ws, "poweroff")["ok"]
        wait_until(lambda: vm.state == "gone", timeout=5, what="the kernel to see QEMU gone")
        assert control(ws, "pause", 2) == {"id": 2, "ok": False, "error": "pause: the VM is gone"}
    finally:
        ws.close()
