"""petri_nb's own guest agent protocol: commands and files over a framed byte channel.

The channel is a dedicated virtio-serial port (not the console), so guest output
cannot be confused with prompts or logs. Every frame carries its length, so any
bytes, including NULs and the frame marker itself, pass through unchanged; a
request id lets us drop late frames from a command we gave up on. The guest side
is ``petri_nb/guests/linux/agent.c`` (frame format documented there). This is one
transport of ``petri_nb.vm.agent.AsyncAgent``; ``petri_nb.vm.qga`` is the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
import time

from ..errors import AgentError, PetriTimeout
from ..model.agent_result import MAX_OUTPUT, AgentResult

_HEADER = struct.Struct(">2sBII")
_MARKER = b"PA"
#: Largest single frame we send (the guest allocates a request whole).
MAX_REQUEST = 64 << 20
PING_INTERVAL = 0.5
#: How long a killed command may take to report its status.
KILL_GRACE = 5.0


class _Channel:
    """Frames over one connection; one reader task sorts frames into a queue."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._frames: asyncio.Queue[tuple[int, int, bytes] | None] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._task = asyncio.ensure_future(self._read_frames())
        self.lock = asyncio.Lock()  # one request at a time: the guest serves them in order
        self.closed: str | None = None

    async def _read_frames(self) -> None:
        try:
            while True:
                header = await self._reader.readexactly(_HEADER.size)
                marker, kind, rid, length = _HEADER.unpack(header)
                if marker != _MARKER:
                    raise AgentError(f"agent channel out of sync (got {header!r})")
                self._frames.put_nowait((kind, rid, await self._reader.readexactly(length)))
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            self.closed = f"agent channel closed ({type(e).__name__})"
        except AgentError as e:
            self.closed = str(e)
        finally:
            self._frames.put_nowait(None)

    def next_id(self) -> int:
        return next(self._ids)

    async def send(self, kind: bytes, rid: int, payload: bytes = b"") -> None:
        if self.closed:
            raise AgentError(self.closed)
        self._writer.write(_HEADER.pack(_MARKER, kind[0], rid, len(payload)) + payload)
        await self._writer.drain()

    async def receive(self, rids: set[int], timeout: float | None) -> tuple[str, int, bytes]:
        """The next frame answering one of ``rids``; older frames are dropped."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise TimeoutError
            frame = await asyncio.wait_for(self._frames.get(), left)
            if frame is None:
                self._frames.put_nowait(None)  # keep telling later callers
                raise AgentError(self.closed or "agent channel closed")
            kind, rid, payload = frame
            if rid in rids:
                return chr(kind), rid, payload

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        self._writer.close()


def _failure(payload: bytes) -> AgentError:
    return AgentError(f"guest agent: {payload.decode(errors='replace')}")


class PetriAgentChannel:
    """The host end of petri_nb's agent: one request at a time, as the guest serves them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._channel = _Channel(reader, writer)

    @property
    def closed(self) -> str | None:
        """Why the channel is closed (QEMU was replaced, the guest went away), or None."""
        return self._channel.closed

    async def wait_until_answering(self, timeout: float | None = None) -> None:
        """Ping until the guest answers (it may still be booting or rebooting)."""
        await asyncio.wait_for(self._ping_until_answered(), timeout)

    async def _ping_until_answered(self) -> None:
        asked: set[int] = set()
        async with self._channel.lock:
            while True:
                rid = self._channel.next_id()
                asked.add(rid)
                await self._channel.send(b"P", rid)
                with contextlib.suppress(asyncio.TimeoutError):
                    await self._channel.receive(asked, PING_INTERVAL)
                    return

    async def _request(self, kind: bytes, payload: bytes, timeout: float | None,
                       command: str, limit: int = MAX_OUTPUT) -> tuple[dict[str, bytearray], int]:
        """Send one request; collect its data frames until 'S' (status) or 'F' (failure),
        at most ``limit`` bytes of them (a flood is stopped, not buffered)."""
        if len(payload) > MAX_REQUEST:
            raise AgentError(f"request of {len(payload)} bytes is larger than the agent's {MAX_REQUEST} byte limit")
        chunks: dict[str, bytearray] = {"O": bytearray(), "E": bytearray(), "D": bytearray()}
        async with self._channel.lock:
            rid = self._channel.next_id()
            await self._channel.send(kind, rid, payload)
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            try:
                while True:
                    left = None if deadline is None else deadline - loop.time()
                    kind_r, _, data = await self._channel.receive({rid}, left)
                    if kind_r == "S":
                        return chunks, struct.unpack(">i", data)[0]
                    if kind_r == "F":
                        raise _failure(data)
                    if kind_r in chunks:
                        chunks[kind_r] += data
                        if sum(map(len, chunks.values())) > limit:
                            await self._kill(rid)
                            raise AgentError(f"guest command {command!r} produced more than {limit} bytes "
                                             "(max_output); it was stopped")
            except TimeoutError:
                await self._kill(rid)
                raise PetriTimeout(f"guest command {command!r} did not finish within {timeout:g} s; "
                                   "it was killed") from None
            except asyncio.CancelledError:
                await self._kill(rid)  # e.g. the VM halted under us: leave the channel in order
                raise

    async def _kill(self, rid: int) -> None:
        with contextlib.suppress(BaseException):
            await self._channel.send(b"K", rid)
            while (await self._channel.receive({rid}, KILL_GRACE))[0] not in "SF":
                pass

    async def run(self, command: str, timeout: float | None, max_output: int = MAX_OUTPUT) -> AgentResult:
        start = time.monotonic()
        chunks, status = await self._request(b"X", command.encode(), timeout, command, max_output)
        return AgentResult(command, status, bytes(chunks["O"]), bytes(chunks["E"]), time.monotonic() - start)

    async def read_file(self, path: str, timeout: float | None, max_output: int = MAX_OUTPUT) -> bytes:
        chunks, _ = await self._request(b"r", path.encode(), timeout, path, max_output)
        return bytes(chunks["D"])

    async def write_file(self, path: str, data: bytes, timeout: float | None) -> None:
        await self._request(b"w", path.encode() + b"\0" + data, timeout, path)

    async def reboot(self) -> None:
        """The guest acknowledges, then reboots."""
        await self._request(b"B", b"", 10.0, "reboot")

    async def shutdown(self) -> None:
        raise AgentError("petri_nb's own agent has no shutdown command: use send_shutdown('poweroff') (ACPI)")

    async def close(self) -> None:
        await self._channel.close()
