"""The guest agent as the VM's user sees it: run commands, read and write files, reboot.

Two agents speak to the host over a virtio-serial port: petri_nb's own (the test Linux
guest; ``agent_petri``) and the QEMU guest agent that users' images ship
(``qga``). ``AsyncAgent`` puts either behind one interface and adds what both
need: every call goes through the VM's race (``CallContext.call(..., halts=True)``), so a guest that
crashes under a command gives ``VmHalted``, not a hang, and every call is a row on
the timeline.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from ..errors import AgentError
from ..model.agent_result import MAX_OUTPUT, AgentResult, check_guest_path
from ..runtime.loop import blocking_twins, runs_on_runtime_loop
from .agent_petri import PetriAgentChannel
from .context import CallContext
from .qga import QgaClient
from .twin_names import AgentTwins

__all__ = ["MAX_OUTPUT", "Agent", "AgentResult", "AsyncAgent", "agent_for"]


class Transport(Protocol):
    """What an agent protocol provides (PetriAgentChannel, QgaClient)."""

    @property
    def closed(self) -> str | None: ...
    async def wait_until_answering(self, timeout: float | None = None) -> None: ...
    async def run(self, command: str, timeout: float | None, max_output: int = MAX_OUTPUT) -> AgentResult: ...
    async def read_file(self, path: str, timeout: float | None, max_output: int = MAX_OUTPUT) -> bytes: ...
    async def write_file(self, path: str, data: bytes, timeout: float | None) -> None: ...
    async def reboot(self) -> None: ...
    async def shutdown(self) -> None: ...
    async def close(self) -> None: ...


#: Which transport speaks to each ``Guest.agent``.
TRANSPORTS: dict[str, Any] = {"petri": PetriAgentChannel, "qga": QgaClient}


class AsyncAgent:
    """The agent of one VM; coroutines usable from any loop (they run on the runtime loop)."""

    def __init__(self, vm: CallContext, transport: Transport) -> None:
        self.vm = vm
        self.transport = transport

    def __repr__(self) -> str:
        return f"<AsyncAgent ({self.vm.guest.agent}) of {self.vm.name}>"

    async def _answering(self, timeout: float | None) -> None:
        await self.vm.call("wait_for_agent", self.transport.wait_until_answering(), halts=True, timeout=timeout,
                           what="the guest agent to answer")

    def _record(self, kind: str, detail: str, data: dict[str, Any]) -> None:
        self.vm.record("agent", kind, detail, data)

    @runs_on_runtime_loop
    async def run(self, command: str, timeout: float | None = 60.0, max_output: int = MAX_OUTPUT) -> AgentResult:
        """Run ``command`` with the guest's /bin/sh; stdout/stderr are bytes, stdin is empty. More than
        ``max_output`` bytes of output stops the command with an AgentError."""
        result = await self.vm.call("agent.run", self.transport.run(command, timeout, max_output), halts=True,
                                    timeout=None, what="the guest command")
        self._record("run", f"{command[:80]!r} -> exit {result.exit_code}",
                     {"command": command, "exit_code": result.exit_code, "stdout_bytes": len(result.stdout),
                      "stderr_bytes": len(result.stderr), "duration_s": result.duration_s})
        return result

    @runs_on_runtime_loop
    async def read_file(self, path: str, timeout: float | None = 60.0, max_output: int = MAX_OUTPUT) -> bytes:
        """The bytes of a guest file (at most ``max_output`` of them)."""
        check_guest_path(path)
        data = await self.vm.call("agent.read_file", self.transport.read_file(path, timeout, max_output),
                                 halts=True, timeout=None, what="the guest file")
        self._record("read_file", path, {"path": path, "bytes": len(data)})
        return data

    @runs_on_runtime_loop
    async def write_file(self, path: str, data: bytes | str, timeout: float | None = 60.0) -> None:
        """Create or replace a guest file with ``data`` (str is written as UTF-8)."""
        check_guest_path(path)
        payload = data.encode() if isinstance(data, str) else bytes(data)
        await self.vm.call("agent.write_file", self.transport.write_file(path, payload, timeout),
                           halts=True, timeout=None, what="the guest file")
        self._record("write_file", path, {"path": path, "bytes": len(payload)})

    @runs_on_runtime_loop
    async def ping(self, timeout: float | None = 10.0) -> float:
        """Seconds one round trip to the agent takes."""
        start = time.monotonic()
        await self._answering(timeout)
        return time.monotonic() - start

    @runs_on_runtime_loop
    async def reboot(self) -> None:
        """Ask the guest to reboot; the VM then halts with RESET."""
        await self.vm.call("agent.reboot", self.transport.reboot(), halts=True, timeout=None)

    @runs_on_runtime_loop
    async def shutdown(self) -> None:
        """Ask the guest to power off (QEMU guest agent); the VM then halts with POWER_OFF."""
        await self.vm.call("agent.shutdown", self.transport.shutdown(), halts=True, timeout=None)

    @runs_on_runtime_loop
    async def close(self) -> None:
        await self.transport.close()



@blocking_twins(AsyncAgent)
class Agent(AgentTwins):
    """Blocking face of AsyncAgent (methods generated from it); ``agent.aio`` is the async one."""

    def __init__(self, aio: AsyncAgent) -> None:
        self.aio = aio

    def __repr__(self) -> str:
        return f"<Agent ({self.aio.vm.guest.agent}) of {self.aio.vm.name}>"


async def agent_for(vm: CallContext, timeout: float) -> AsyncAgent:
    """The VM's agent, connecting on first use; waits until it answers (e.g. after a reboot)."""
    agent: AsyncAgent | None = vm.agent
    if agent is not None:
        try:
            await agent._answering(timeout)
            return agent
        except AgentError:
            if not agent.transport.closed:
                raise
            await agent.transport.close()  # QEMU was replaced (restore_state, a new command line): reconnect
            vm.agent = None
    kind = vm.guest.agent
    if kind not in TRANSPORTS:
        raise AgentError(f"VM {vm.name} has no guest agent: its guest was launched without one (agent=None)")
    reader, writer = await vm.call("agent.connect", vm.runtime.open_agent_channel(), timeout=None)
    agent = AsyncAgent(vm, TRANSPORTS[kind](reader, writer))
    try:
        await agent._answering(timeout)
    except BaseException:
        await agent.transport.close()
        raise
    vm.agent = agent
    return agent
