"""Attack on the view server's checks: swap a run dir's name between a private dir and a symlink to
(or a rename of) a 0755 dir holding a socket, while the server resolves and connects. The server must
refuse (403) or reach the private dir's socket, never answer 500, and never reach the other socket."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from petri_nb.server.rundirs import Refused, resolve
from tests.test_view_server import Server, server  # noqa: F401  (the real Jupyter server fixture)

SWAPS = 1_000_000
SECONDS = 4.0


class Listener:
    """A unix socket that greets every connection with ``tag`` and counts them."""

    def __init__(self, path: Path, tag: bytes) -> None:
        self.tag, self.accepted = tag, 0
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            with conn, contextlib.suppress(OSError):
                conn.sendall(self.tag)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def swapped() -> Iterator[tuple[str, Listener, Listener, threading.Event]]:
    """(the contested name, the private dir's listener, the 0755 dir's listener, 'swapping has stopped')."""
    base = Path(os.path.realpath(tempfile.gettempdir()))  # where the view server looks
    tag = secrets.token_hex(4)
    name = f"petri_nb-race-{tag}"
    good = Path(tempfile.mkdtemp(prefix=f"petri_nb-good-{tag}-"))  # 0700
    evil = base / f"petri_nb-open-{tag}"
    evil.mkdir()
    evil.chmod(0o755)
    ours, theirs = Listener(good / "vnc.sock", b"GOOD"), Listener(evil / "vnc.sock", b"EVIL")
    contested = base / name
    done = threading.Event()

    def swap() -> None:
        deadline = time.monotonic() + SECONDS
        try:
            for _ in range(SWAPS):
                if done.is_set() or time.monotonic() > deadline:
                    break
                os.rename(good, contested)
                os.rename(contested, good)
                os.symlink(evil, contested)
                os.unlink(contested)
                os.rename(evil, contested)
                os.rename(contested, evil)
        finally:
            done.set()

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    try:
        yield name, ours, theirs, done
    finally:
        done.set()
        swapper.join(10)
        ours.close()
        theirs.close()
        with contextlib.suppress(OSError):
            contested.unlink()
        shutil.rmtree(good, ignore_errors=True)
        shutil.rmtree(evil, ignore_errors=True)


def test_resolve_and_connect_under_a_rename_race_never_reach_the_open_dir(swapped) -> None:
    name, ours, theirs, done = swapped
    reached, refused = 0, 0
    while not done.is_set():
        try:
            with resolve(name, "vnc") as sock, socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(sock.path)  # as the bridge does, after the checks
                assert s.recv(4) == b"GOOD"
                reached += 1
        except Refused:
            refused += 1
    assert theirs.accepted == 0
    assert reached > 0 and refused > 0, (reached, refused)  # the race was run both ways


def test_the_view_server_under_a_rename_race_answers_403_or_the_private_socket(
        server: Server, swapped) -> None:  # noqa: F811  (the imported fixture; up before the swapping starts)
    name, ours, theirs, done = swapped
    codes: dict[int, int] = {}
    while not done.is_set():
        try:
            ws = server.ws(name, "vnc")
        except websocket.WebSocketBadStatusException as e:
            codes[e.status_code] = codes.get(e.status_code, 0) + 1
            continue
        try:
            data = ws.recv()
            assert data in (b"GOOD", b""), data
        except websocket.WebSocketConnectionClosedException:
            pass
        finally:
            ws.close()
        codes[101] = codes.get(101, 0) + 1
    assert set(codes) <= {101, 403} and sum(codes.values()) > 20, codes
    assert theirs.accepted == 0
    assert "Traceback" not in server.log.read_text()
