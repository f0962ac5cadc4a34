"""The host side of the guest agent: commands and files over a framed byte channel.

The channel is a dedicated virtio-serial port (not the console), so guest output
cannot be confused with prompts or logs. Every frame carries its length, so any
bytes, including NULs and the frame marker itself, pass through unchanged; a
request id lets us drop late frames from a command we gave up on. The guest side
is ``petri_nb/guests/linux/agent.c`` (frame format documented there).

Agent calls go through ``VmCore._call(..., halts=True)``: a guest that crashes
under a command gives ``VmHalted``, not a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import AgentError, PetriTimeout
from .loop import blocking_twins, runs_on_runtime_loop

if TYPE_CHECKING:
    from .vm_core import VmCore

_HEADER = struct.Struct(">2sBII")
_MARKER = b"PA"
#: Largest single frame we send (the guest allocates a request whole).
MAX_REQUEST = 64 << 20
PING_INTERVAL = 0.5
#: Most output (stdout + stderr, or a file's bytes) one agent call keeps; more stops the command.
MAX_OUTPUT = 64 << 20
#: How long a killed command may take to report its status.
KILL_GRACE = 5.0


@dataclass(frozen=True)
class AgentResult:
    """What a guest command produced."""

    command: str
    exit_code: int
    stdout: bytes
    stderr: bytes
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def text(self) -> str:
        """stdout decoded for display (undecodable bytes replaced)."""
        return self.stdout.decode(errors="replace")

    def check(self) -> AgentResult:
        """Raise AgentError unless the command exited 0."""
        if self.exit_code != 0:
            raise AgentError(f"guest command {self.command!r} exited {self.exit_code}: "
                             f"{self.stderr.decode(errors='replace').strip()[-500:]}")
        return self


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
                raise asyncio.TimeoutError
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


class AsyncAgent:
    """The agent of one VM; coroutines usable from any loop (they run on the runtime loop)."""

    def __init__(self, vm: VmCore, channel: _Channel) -> None:
        self.vm = vm
        self._channel = channel

    def __repr__(self) -> str:
        return f"<AsyncAgent of {self.vm.name}>"

    @classmethod
    async def connect(cls, vm: VmCore, timeout: float) -> AsyncAgent:
        """Open the channel and ping until the guest answers."""
        reader, writer = await vm._call("agent.connect", vm.runtime.open_agent_channel(), timeout=None)
        channel = _Channel(reader, writer)
        agent = cls(vm, channel)
        try:
            await vm._call("wait_for_agent", agent._ping_until_answered(), halts=True, timeout=timeout,
                           what="the guest agent to answer")
        except BaseException:
            await channel.close()
            raise
        return agent

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
            except asyncio.TimeoutError:
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

    def _record(self, kind: str, detail: str, data: dict) -> None:
        self.vm._record("agent", kind, detail, data)

    @runs_on_runtime_loop
    async def run(self, command: str, timeout: float | None = 60.0, max_output: int = MAX_OUTPUT) -> AgentResult:
        """Run ``command`` with the guest's /bin/sh; stdout/stderr are bytes, stdin is empty. More than
        ``max_output`` bytes of output stops the command with an AgentError."""
        if not isinstance(command, str) or "\0" in command:
            raise AgentError(f"agent command must be a string without NUL bytes, not {command!r}")
        start = time.monotonic()
        chunks, status = await self.vm._call(
            "agent.run", self._request(b"X", command.encode(), timeout, command, max_output),
            halts=True, timeout=None, what="the guest command")
        result = AgentResult(command, status, bytes(chunks["O"]), bytes(chunks["E"]), time.monotonic() - start)
        self._record("run", f"{command[:80]!r} -> exit {status}",
                     {"command": command, "exit_code": status, "stdout_bytes": len(result.stdout),
                      "stderr_bytes": len(result.stderr), "duration_s": result.duration_s})
        return result

    @runs_on_runtime_loop
    async def read_file(self, path: str, timeout: float | None = 60.0) -> bytes:
        """The bytes of a guest file."""
        _check_path(path)
        chunks, _ = await self.vm._call("agent.read_file", self._request(b"r", path.encode(), timeout, path),
                                        halts=True, timeout=None, what="the guest file")
        self._record("read_file", path, {"path": path, "bytes": len(chunks["D"])})
        return bytes(chunks["D"])

    @runs_on_runtime_loop
    async def write_file(self, path: str, data: bytes | str, timeout: float | None = 60.0) -> None:
        """Create or replace a guest file with ``data`` (str is written as UTF-8)."""
        _check_path(path)
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise AgentError(f"write_file() data must be bytes or str, not {type(data).__name__}")
        payload = path.encode() + b"\0" + bytes(data)
        await self.vm._call("agent.write_file", self._request(b"w", payload, timeout, path),
                            halts=True, timeout=None, what="the guest file")
        self._record("write_file", path, {"path": path, "bytes": len(data)})

    async def reboot(self) -> None:
        """Ask the guest to reboot (it acknowledges first); the VM then halts with RESET."""
        await self.vm._call("agent.reboot", self._request(b"B", b"", 10.0, "reboot"), halts=True, timeout=None)

    async def close(self) -> None:
        await self._channel.close()


def _check_path(path: object) -> None:
    if not isinstance(path, str) or not path or "\0" in path:
        raise AgentError(f"guest path must be a non-empty string without NUL bytes, not {path!r}")


@blocking_twins(AsyncAgent)
class Agent:
    """Blocking face of AsyncAgent (methods generated from it); ``agent.aio`` is the async one."""

    def __init__(self, aio: AsyncAgent) -> None:
        self.aio = aio

    def __repr__(self) -> str:
        return f"<Agent of {self.aio.vm.name}>"


_agents: weakref.WeakKeyDictionary[VmCore, AsyncAgent] = weakref.WeakKeyDictionary()


async def agent_for(vm: VmCore, timeout: float) -> AsyncAgent:
    """The VM's agent, connecting on first use; pings so a rebooted guest is waited for."""
    agent = _agents.get(vm)
    if agent is not None:
        try:
            await vm._call("wait_for_agent", agent._ping_until_answered(), halts=True, timeout=timeout,
                           what="the guest agent to answer")
            return agent
        except AgentError:
            if not agent._channel.closed:
                raise
            await agent.close()  # QEMU was replaced (restore_state, a new command line): reconnect
            del _agents[vm]
    agent = _agents[vm] = await AsyncAgent.connect(vm, timeout)
    return agent
