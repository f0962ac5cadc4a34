"""An emulated TPM 2.0 for a guest: one swtpm process per VM, its socket in the private run dir.

swtpm is started before QEMU and stopped after it, under the same parent-death guard
as QEMU (a killed kernel leaves no swtpm behind). It keeps its state in the run dir,
so a guest's TPM survives resets (and relaunches) of the same VM.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

from ...errors import LaunchError
from .process import QemuProcess

SOCKET = "swtpm.sock"
START_TIMEOUT = 10.0


class Swtpm:
    """A running swtpm for one VM."""

    def __init__(self, proc: QemuProcess, rundir: Path) -> None:
        self.proc = proc
        self.socket = rundir / SOCKET

    @classmethod
    async def start(cls, rundir: Path) -> Swtpm:
        binary = shutil.which("swtpm")
        if binary is None:
            raise LaunchError("tpm=True needs swtpm; install it with: sudo apt-get install swtpm swtpm-tools")
        state = rundir / "tpm"
        state.mkdir(mode=0o700, exist_ok=True)
        argv = [binary, "socket", "--tpm2", "--tpmstate", f"dir={state}",
                "--ctrl", f"type=unixio,path={rundir / SOCKET}", "--log", f"file={rundir / 'swtpm.log'}",
                "--flags", "startup-clear"]
        tpm = cls(await QemuProcess.spawn(argv, cwd=str(rundir), name="swtpm"), rundir)
        try:
            await tpm._wait_for_socket()
        except BaseException:
            await tpm.stop()
            raise
        return tpm

    async def _wait_for_socket(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while not self.socket.exists():  # swtpm has no readiness signal but its socket file
            if self.proc.returncode is not None:
                raise LaunchError(f"swtpm failed to start: {self.proc.exit_description()}")
            if loop.time() > deadline:
                raise LaunchError(f"swtpm did not open {self.socket} within {START_TIMEOUT:g} s")
            await asyncio.sleep(0.01)

    def qemu_args(self) -> list[str]:
        return ["-chardev", f"socket,id=tpm-chr,path={self.socket}",
                "-tpmdev", "emulator,id=tpm0,chardev=tpm-chr",
                "-device", "tpm-tis,tpmdev=tpm0"]

    async def stop(self) -> None:
        self.proc.kill()
        with contextlib.suppress(Exception):
            await self.proc.wait()
