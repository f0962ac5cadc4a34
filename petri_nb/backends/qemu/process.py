"""The QEMU process: spawning under a parent-death guard, stderr capture, exit."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess


class QemuProcess:
    """One QEMU child (or a helper such as swtpm). It dies with the thread that spawned it
    (setpriv --pdeathsig), so spawn it from the runtime loop thread, which lives as long
    as the process."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str = "QEMU") -> None:
        self._proc = proc
        self.name = name
        self.pid = proc.pid
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=50)
        self._stderr_task = asyncio.ensure_future(self._read_stderr())

    @classmethod
    async def spawn(cls, argv: list[str], cwd: str, name: str = "QEMU") -> QemuProcess:
        proc = await asyncio.create_subprocess_exec(
            "setpriv", "--pdeathsig", "KILL", "--", *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=cwd,
            start_new_session=True,  # a terminal's Ctrl-C is for Python, not for QEMU
        )
        return cls(proc, name)

    async def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        async for line in self._proc.stderr:
            self.stderr_tail.append(line.decode(errors="replace").rstrip())

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        code = await self._proc.wait()
        await self._stderr_task
        return code

    def exit_description(self) -> str:
        code = self._proc.returncode
        if code is not None and code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with status {code}"
        tail = " | ".join(self.stderr_tail)
        return f"{self.name} (pid {self.pid}) {how}" + (f": {tail}" if tail else "")

    def kill(self) -> None:
        if self._proc.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
