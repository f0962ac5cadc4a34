"""The serial console beside the kernel: a unix socket in the run dir for the view's serial pane.

QEMU's serial port has one chardev, and the runtime already reads it (console text, expect,
the timeline). The tap shares that stream: every chunk the runtime reads also goes to each
client of ``serial.sock``, and bytes a client sends are written to the guest's console. It
runs on the runtime loop, which keeps running while a notebook cell blocks, so the pane
stays live then. The server extension bridges the socket to the browser (petri_nb.server).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

#: Output a new client gets first (the pane's initial scrollback).
HISTORY = 64 * 1024
#: A client this far behind is dropped rather than buffered without bound.
MAX_BACKLOG = 1 << 20
READ_CHUNK = 4096


class SerialTap:
    """Fans console output out to socket clients; their input goes to ``write``."""

    def __init__(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        self._write = write
        self._history = bytearray()
        self._clients: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self, path: Path) -> None:
        self._server = await asyncio.start_unix_server(self._serve, str(path))

    def feed(self, data: bytes) -> None:
        """A chunk of console output (called on the runtime loop by the console reader)."""
        self._history += data
        if len(self._history) > HISTORY:
            del self._history[:-HISTORY]
        for client in list(self._clients):
            if client.transport.get_write_buffer_size() > MAX_BACKLOG:
                self._drop(client)
            else:
                client.write(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(bytes(self._history))
        self._clients.add(writer)
        try:
            while data := await reader.read(READ_CHUNK):
                await self._write(data)
        except Exception:  # noqa: BLE001  (a VM that halted or went away: the client just ends)
            pass
        finally:
            self._drop(writer)

    def _drop(self, client: asyncio.StreamWriter) -> None:
        self._clients.discard(client)
        with contextlib.suppress(Exception):
            client.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in list(self._clients):
            self._drop(client)
