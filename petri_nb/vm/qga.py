"""A client of the QEMU guest agent protocol (``qemu-ga``), for guests that ship the standard agent.

The protocol is one JSON command per line over the virtio-serial port
``org.qemu.guest_agent.0`` and one JSON reply per command, in order; the agent sends
nothing unasked. The byte stream has no framing beyond newlines, so a client that
gave up mid-reply (or a previous client) can leave half a reply in it: before the
first command, and after any timeout, we resync with ``guest-sync-delimited``, whose
reply is preceded by a 0xFF byte (never valid in JSON text) and carries our random id.

The class works on a (StreamReader, StreamWriter) pair and knows nothing of VMs; the
VM layer races its calls against halts, as ``petri_nb.vm.agent`` does. Results and
errors match the built-in agent: ``AgentResult``, ``AgentError``, ``PetriTimeout``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
from typing import Any

from ..errors import AgentError, PetriTimeout, QgaError
from ..model.agent_result import MAX_OUTPUT, AgentResult, check_guest_path

#: Bytes per guest-file-read/write call (base64 makes the JSON line 4/3 of this).
FILE_CHUNK = 1 << 20
#: How long one guest-sync-delimited attempt waits before it is sent again (agent not up yet).
SYNC_RETRY = 0.5
#: guest-exec-status polling: first interval, growing to the maximum.
POLL_FIRST, POLL_MAX = 0.005, 0.1
_DELIMITER = b"\xff"


class _Replies:
    """Split the agent's byte stream into JSON replies; a 0xFF drops what came before it."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._buffer = bytearray()
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.closed: str | None = None
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        try:
            while chunk := await self._reader.read(1 << 16):
                self._buffer += chunk
                self._split()
            self.closed = "guest agent channel closed (EOF)"
        except (ConnectionError, OSError) as e:
            self.closed = f"guest agent channel closed ({type(e).__name__}: {e})"
        finally:
            self.queue.put_nowait(None)

    def _split(self) -> None:
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            line = line.rsplit(_DELIMITER, 1)[-1].strip()  # half a reply before a sync marker
            if not line:
                continue
            try:
                message = json.loads(line)
            except ValueError:
                continue  # the tail of a reply whose start we never saw
            if isinstance(message, dict):
                self.queue.put_nowait(message)

    def drain(self) -> None:
        """Forget replies nobody waits for any more (they are stale after a resync)."""
        while not self.queue.empty():
            if self.queue.get_nowait() is None:
                self.queue.put_nowait(None)
                return

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task


class QgaClient:
    """One connection to a QEMU guest agent; one command at a time, as the agent serves them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._replies = _Replies(reader)
        self._lock = asyncio.Lock()
        self._synced = False

    @classmethod
    async def open_unix(cls, path: str, timeout: float = 10.0) -> QgaClient:
        """Connect to QEMU's chardev socket (``-chardev socket,server=on``) and sync."""
        reader, writer = await asyncio.open_unix_connection(path)
        client = cls(reader, writer)
        try:
            await client.sync(timeout)
        except BaseException:
            await client.close()
            raise
        return client

    @property
    def closed(self) -> str | None:
        """Why the channel is closed (QEMU was replaced, the guest went away), or None."""
        return self._replies.closed

    async def wait_until_answering(self, timeout: float | None = None) -> None:
        """Sync with the agent, waiting for one that is still starting (e.g. after a reboot)."""
        await self.sync(timeout if timeout is not None else 1e9)

    async def _send(self, message: bytes) -> None:
        if self._replies.closed:
            raise AgentError(self._replies.closed)
        try:
            self._writer.write(message)
            await self._writer.drain()
        except (ConnectionError, OSError) as e:
            raise AgentError(f"guest agent channel closed ({type(e).__name__}: {e})") from e

    async def _next_reply(self, deadline: float) -> dict[str, Any]:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise TimeoutError
        reply = await asyncio.wait_for(self._replies.queue.get(), left)
        if reply is None:
            self._replies.queue.put_nowait(None)  # keep telling later callers
            raise AgentError(self._replies.closed or "guest agent channel closed")
        return reply

    async def _sync_locked(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._replies.drain()
            token = random.randrange(1, 1 << 31)
            # A leading 0xFF makes the agent's JSON parser drop any half command we left behind.
            await self._send(_DELIMITER + json.dumps(
                {"execute": "guest-sync-delimited", "arguments": {"id": token}}).encode() + b"\n")
            attempt_end = min(deadline, loop.time() + SYNC_RETRY)
            with contextlib.suppress(asyncio.TimeoutError):
                while True:
                    if (await self._next_reply(attempt_end)).get("return") == token:
                        self._synced = True
                        return
            if loop.time() >= deadline:
                raise PetriTimeout(f"the guest agent did not answer guest-sync-delimited within {timeout:g} s")

    async def sync(self, timeout: float = 10.0) -> None:
        """Bring the stream back in step (also waits for an agent that is still starting)."""
        async with self._lock:
            await self._sync_locked(timeout)

    async def execute(self, command: str, arguments: dict[str, Any] | None = None,
                      timeout: float | None = 60.0) -> Any:
        """Send one command and return its ``return`` value; QgaError if the agent refused it."""
        message = {"execute": command, **({"arguments": arguments} if arguments else {})}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout if timeout is not None else 1e9)
        async with self._lock:
            if not self._synced:
                await self._sync_locked(max(0.1, deadline - loop.time()))
            await self._send(json.dumps(message).encode() + b"\n")
            try:
                reply = await self._next_reply(deadline)
            except TimeoutError:
                self._synced = False  # its reply may still come: resync before the next command
                raise PetriTimeout(f"the guest agent did not answer {command} within {timeout:g} s") from None
            except asyncio.CancelledError:
                self._synced = False
                raise
        if "error" in reply:
            error = reply["error"]
            raise QgaError(command, str(error.get("class", "?")), str(error.get("desc", "")))
        return reply.get("return")

    async def _send_only(self, command: str, arguments: dict[str, Any]) -> None:
        """A command the agent never answers (the guest goes away under it)."""
        async with self._lock:
            if not self._synced:
                await self._sync_locked(10.0)
            await self._send(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
            self._synced = False

    async def ping(self, timeout: float | None = 10.0) -> float:
        """Round-trip ``guest-ping``; the seconds it took."""
        start = time.monotonic()
        await self.execute("guest-ping", timeout=timeout)
        return time.monotonic() - start

    async def run(self, command: str, timeout: float | None = 60.0, max_output: int = MAX_OUTPUT) -> AgentResult:
        """Run ``command`` with the guest's /bin/sh; stdout/stderr are bytes, stdin is empty."""
        if not isinstance(command, str) or "\0" in command:
            raise AgentError(f"agent command must be a string without NUL bytes, not {command!r}")
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        started = await self.execute("guest-exec", {"path": "/bin/sh", "arg": ["-c", command],
                                                    "capture-output": True}, timeout)
        pid = started["pid"]
        interval = POLL_FIRST
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                await self._kill(pid)
                raise PetriTimeout(f"guest command {command!r} did not finish within {timeout:g} s; it was killed")
            try:
                status = await self.execute("guest-exec-status", {"pid": pid}, left)
            except PetriTimeout:
                if deadline is not None and time.monotonic() >= deadline:
                    continue  # the command's own time ran out during the poll: said (and killed) above
                raise
            if status.get("exited"):
                break
            await asyncio.sleep(min(interval, left) if left is not None else interval)
            interval = min(interval * 2, POLL_MAX)
        if status.get("out-truncated") or status.get("err-truncated"):
            raise AgentError(f"guest command {command!r}: the agent truncated its output (qemu-ga keeps 16 MiB)")
        code = status["exitcode"] if "exitcode" in status else 128 + int(status.get("signal", 0))
        out, err = base64.b64decode(status.get("out-data", "")), base64.b64decode(status.get("err-data", ""))
        if len(out) + len(err) > max_output:
            raise AgentError(f"guest command {command!r} produced more than {max_output} bytes (max_output)")
        return AgentResult(command, code, out, err, time.monotonic() - start)

    async def _kill(self, pid: int) -> None:
        """Best effort: qemu-ga 7.2 has no command to kill what guest-exec started."""
        with contextlib.suppress(AgentError, PetriTimeout):
            await self.execute("guest-exec", {"path": "/bin/kill", "arg": ["-9", str(pid)]}, 5.0)

    async def read_file(self, path: str, timeout: float | None = 60.0, max_output: int = MAX_OUTPUT) -> bytes:
        """The bytes of a guest file, read in chunks (at most ``max_output`` of them)."""
        check_guest_path(path)
        handle = await self.execute("guest-file-open", {"path": path, "mode": "rb"}, timeout)
        data = bytearray()
        try:
            while True:
                chunk = await self.execute("guest-file-read", {"handle": handle, "count": FILE_CHUNK}, timeout)
                data += base64.b64decode(chunk.get("buf-b64", ""))
                if len(data) > max_output:
                    raise AgentError(f"guest file {path} is larger than {max_output} bytes (max_output)")
                if chunk.get("eof") or not chunk.get("count"):
                    return bytes(data)
        finally:
            await self._close_file(handle)

    async def write_file(self, path: str, data: bytes | str, timeout: float | None = 60.0) -> None:
        """Create or replace a guest file with ``data`` (str is written as UTF-8)."""
        check_guest_path(path)
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise AgentError(f"write_file() data must be bytes or str, not {type(data).__name__}")
        data = bytes(data)
        handle = await self.execute("guest-file-open", {"path": path, "mode": "wb"}, timeout)
        try:
            for offset in range(0, len(data), FILE_CHUNK):
                piece = data[offset:offset + FILE_CHUNK]
                written = await self.execute("guest-file-write", {
                    "handle": handle, "buf-b64": base64.b64encode(piece).decode()}, timeout)
                if written.get("count") != len(piece):
                    raise AgentError(f"guest agent wrote {written.get('count')} of {len(piece)} bytes to {path}")
        finally:
            await self._close_file(handle)

    async def _close_file(self, handle: int) -> None:
        with contextlib.suppress(AgentError, PetriTimeout):
            await self.execute("guest-file-close", {"handle": handle}, 10.0)

    async def shutdown(self) -> None:
        """Ask the guest to power off (``guest-shutdown``); the agent does not answer it."""
        await self._send_only("guest-shutdown", {"mode": "powerdown"})

    async def reboot(self) -> None:
        """Ask the guest to reboot; the agent does not answer it, the VM then resets."""
        await self._send_only("guest-shutdown", {"mode": "reboot"})

    async def close(self) -> None:
        await self._replies.close()
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

