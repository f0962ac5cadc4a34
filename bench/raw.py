"""The baseline: the same QEMU command line started by hand, driven through plain qemu.qmp.

Each benchmark compares petri_nb against this, so it does the least a careful user
would do by hand: spawn QEMU, accept its QMP and console connections, ``cont``,
and read the console until the banner. It runs on the caller's own event loop.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from qemu.qmp import QMPClient

BANNER = re.compile(rb"tmk: ready\r?\n")


def same_command_line(argv: list[str], ours: Path, mine: Path) -> list[str]:
    """petri_nb's argv with its run directory swapped for ours (sockets, logs)."""
    return [arg.replace(str(ours), str(mine)) for arg in argv]


class RawQemu:
    """One hand-started QEMU: process, QMP client and console stream."""

    def __init__(self, argv_template: list[str], template_dir: Path, second_qmp: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="petri_nb-bench-raw-"))
        self.argv = same_command_line(argv_template, template_dir, self.dir)
        if second_qmp:  # for a client of its own, e.g. qemu.qmp's legacy sync client
            self.argv += ["-qmp", f"unix:{self.second_qmp},server=on,wait=off"]
        self.qmp = QMPClient("raw")
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._seen = b""

    @property
    def second_qmp(self) -> Path:
        return self.dir / "qmp2.sock"

    async def start(self) -> float:
        """Spawn QEMU and return seconds until the banner appeared."""
        t0 = time.perf_counter()
        conn: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.get_running_loop().create_future()
        )

        def on_console(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if not conn.done():
                conn.set_result((reader, writer))

        server = await asyncio.start_unix_server(on_console, str(self.dir / "console.sock"))
        await self.qmp.start_server(str(self.dir / "qmp.sock"))
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        await asyncio.wait_for(self.qmp.accept(), 30)
        self._reader, self._writer = await asyncio.wait_for(conn, 30)
        server.close()
        await self.qmp.execute("cont")
        await self.banner()
        return time.perf_counter() - t0

    async def banner(self) -> None:
        """Read the console until the next ready banner (consumes it)."""
        assert self._reader is not None
        while not (m := BANNER.search(self._seen)):
            chunk = await asyncio.wait_for(self._reader.read(65536), 30)
            if not chunk:
                raise RuntimeError("raw QEMU console closed")
            self._seen += chunk
        self._seen = self._seen[m.end():]

    async def allow_resets(self) -> None:
        """The shared command line turns reboots into halts; a raw soak wants plain resets."""
        await self.qmp.execute("set-action", {"reboot": "reset"})

    async def reset_to_banner(self) -> None:
        await self.qmp.execute("system_reset")
        await self.banner()

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(self.qmp.execute("quit"), 3)
        except Exception:
            pass
        if self.proc is not None:
            if self.proc.returncode is None:
                try:
                    await asyncio.wait_for(self.proc.wait(), 3)
                except TimeoutError:
                    self.proc.kill()
                    await self.proc.wait()
        try:
            await self.qmp.disconnect()
        except Exception:
            pass
        if self._writer is not None:
            self._writer.close()
        shutil.rmtree(self.dir, ignore_errors=True)
