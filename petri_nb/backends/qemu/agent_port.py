"""The host end of a guest agent's virtio-serial port: we listen, QEMU connects to us.

QEMU is the client (``reconnect=1``) rather than the server on purpose: a QEMU
that listens deletes its socket file when it exits, so after restore_state()
swaps in a new QEMU with the same command line, the old one's exit would remove
the new one's socket. Our listener is opened only while we wait for a
connection; QEMU retries every second until it is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from ...errors import AgentError, PetriTimeout

SOCKET = "agent.sock"
CHARDEV_ID = "agent"
#: QEMU retries its connection every second; allow a few.
CONNECT_TIMEOUT = 10.0
#: The virtio-serial port name each agent looks for in the guest.
PORT_NAMES = {"petri": "petri.agent", "qga": "org.qemu.guest_agent.0"}


def chardev_args(agent: str, rundir: Path) -> list[str]:
    """Command line for the guest agent's port (``agent``: "petri" or "qga")."""
    return [
        "-chardev", f"socket,id={CHARDEV_ID},path={rundir / SOCKET},reconnect=1",
        "-device", "virtio-serial-pci,id=agent-serial",
        "-device", f"virtserialport,bus=agent-serial.0,chardev={CHARDEV_ID},name={PORT_NAMES[agent]}",
    ]


async def accept_connection(rundir: Path, timeout: float = CONNECT_TIMEOUT
                            ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Listen on the run dir's agent socket until QEMU connects, then stop listening."""
    path = rundir / SOCKET
    conn: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        asyncio.get_running_loop().create_future())

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if conn.done():
            writer.close()
        else:
            conn.set_result((reader, writer))

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    try:
        server = await asyncio.start_unix_server(on_connect, str(path))
    except OSError as e:
        raise AgentError(f"cannot listen for the guest agent port at {path}: {e}") from e
    try:
        return await asyncio.wait_for(conn, timeout)
    except TimeoutError:
        raise PetriTimeout(f"QEMU did not connect the agent port within {timeout:g} s") from None
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
