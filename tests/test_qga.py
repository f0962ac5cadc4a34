"""The QEMU guest agent client against Debian's real qemu-ga, in a fixture disk booted by plain QEMU."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from conftest import our_qemus, wait_until
from plain_qemu import PlainQemu
from qemu.qmp import EventListener, QMPClient

from petri_nb.errors import AgentError, PetriTimeout
from petri_nb.guests.images import READY, bios_disk
from petri_nb.vm.agent import AgentResult
from petri_nb.vm.qga import QgaClient, QgaError

VM_SHARED_ACROSS_TESTS = True  # one guest for the module; the fixture kills it at the end
BOOT_TIMEOUT = 120.0
T = TypeVar("T")


@pytest.fixture(scope="module")
def guest() -> Iterator[PlainQemu]:
    """SYSLINUX + Debian kernel + qemu-ga under SeaBIOS (faster to ready than OVMF under TCG)."""
    qemu = PlainQemu(bios_disk(), "bios", qga=True)
    try:
        qemu.wait_for("serial", READY, BOOT_TIMEOUT)
        yield qemu
    finally:
        qemu.kill()
        wait_until(lambda: not our_qemus(), timeout=5, what="QEMU processes to exit")


def with_client(qemu: PlainQemu, use: Callable[[QgaClient], Awaitable[T]]) -> T:
    """Open a fresh client (so each test also proves the connect-time resync), use it, close it."""
    async def main() -> T:
        client = await QgaClient.open_unix(str(qemu.qga_socket), timeout=30.0)
        try:
            return await use(client)
        finally:
            await client.close()
    return asyncio.run(main())


def test_ping_answers_with_a_round_trip_time(guest: PlainQemu) -> None:
    seconds = with_client(guest, lambda c: c.ping())
    assert 0 < seconds < 5


def test_run_returns_exit_code_stdout_and_stderr(guest: PlainQemu) -> None:
    result = with_client(guest, lambda c: c.run("echo out; echo err >&2; exit 3"))
    assert isinstance(result, AgentResult)
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert not result.ok


def test_run_output_is_binary_safe(guest: PlainQemu) -> None:
    result = with_client(guest, lambda c: c.run(r"printf 'a\000b\377\000\n'"))
    assert result.stdout == b"a\x00b\xff\x00\n"
    assert result.exit_code == 0


def test_run_returns_one_mib_of_output(guest: PlainQemu) -> None:
    result = with_client(guest, lambda c: c.run("head -c 1048576 /dev/zero | tr '\\000' x", timeout=120))
    assert result.stdout == b"x" * (1 << 20)


def test_write_then_read_file_round_trips_binary_data(guest: PlainQemu) -> None:
    data = os.urandom(1536 * 1024) + bytes(range(256))  # more than one 1 MiB chunk, every byte value

    async def round_trip(client: QgaClient) -> tuple[bytes, AgentResult]:
        await client.write_file("/tmp/blob", data)
        return await client.read_file("/tmp/blob"), await client.run("wc -c < /tmp/blob")

    read_back, size = with_client(guest, round_trip)
    assert read_back == data
    assert int(size.stdout) == len(data)


def test_agent_errors_carry_the_agent_class_and_description(guest: PlainQemu) -> None:
    with pytest.raises(QgaError) as info:
        with_client(guest, lambda c: c.read_file("/no/such/file"))
    assert isinstance(info.value, AgentError)
    assert info.value.error_class == "GenericError"
    assert "No such file" in info.value.desc


def test_run_timeout_is_petri_timeout_and_the_client_keeps_working(guest: PlainQemu) -> None:
    async def scenario(client: QgaClient) -> AgentResult:
        with pytest.raises(PetriTimeout, match="did not finish within 1 s"):
            await client.run("sleep 30", timeout=1.0)
        return await client.run("echo still here")

    assert with_client(guest, scenario).stdout == b"still here\n"


def test_a_half_command_and_an_unread_reply_from_a_previous_client_are_skipped(guest: PlainQemu) -> None:
    with socket.socket(socket.AF_UNIX) as raw:  # a client that dies mid-conversation
        raw.connect(str(guest.qga_socket))
        raw.sendall(json.dumps({"execute": "guest-exec", "arguments": {
            "path": "/bin/sh", "arg": ["-c", "true"]}}).encode() + b"\n")
        raw.sendall(b'{"execute": "guest-info"}\n{"execute": "guest-pi')  # a reply it never reads, half a command
    result = with_client(guest, lambda c: c.run("echo in step"))
    assert result.stdout == b"in step\n"


def test_guest_initiated_shutdown_gives_qmp_shutdown() -> None:
    qemu = PlainQemu(bios_disk(), "bios", qga=True, qmp=True)
    try:
        qemu.wait_for("serial", READY, BOOT_TIMEOUT)

        async def shutdown() -> dict:
            qmp = QMPClient("test")
            await qmp.connect(str(qemu.qmp_socket))
            listener = EventListener(("SHUTDOWN",))
            try:
                with qmp.listen(listener):
                    client = await QgaClient.open_unix(str(qemu.qga_socket), timeout=30.0)
                    try:
                        await client.shutdown()
                        event = await asyncio.wait_for(listener.get(), 60.0)
                    finally:
                        await client.close()
                return dict(event["data"])
            finally:
                with contextlib.suppress(EOFError, ConnectionError):  # QEMU may have exited first
                    await qmp.disconnect()

        data = asyncio.run(shutdown())
        assert data == {"guest": True, "reason": "guest-shutdown"}
        assert qemu.wait_for_exit(10.0) == 0
    finally:
        qemu.kill()


# --- protocol edge cases against a scripted agent (no QEMU) ----------------------------------------

async def scripted_agent(script: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
                         use: Callable[[QgaClient], Awaitable[T]]) -> T:
    """Run ``use`` on a client whose other end is ``script`` (over a socketpair)."""
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    agent_reader, agent_writer = await asyncio.open_unix_connection(sock=theirs)
    agent = asyncio.ensure_future(script(agent_reader, agent_writer))
    client = QgaClient(reader, writer)
    try:
        return await use(client)
    finally:
        await client.close()
        agent.cancel()
        agent_writer.close()


async def answer_syncs(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, junk: bytes = b"") -> None:
    """Answer guest-sync-delimited (after ``junk``, e.g. half a stale reply) and guest-ping, in two pieces."""
    while line := await reader.readline():
        request = json.loads(line.rsplit(b"\xff", 1)[-1])
        if request["execute"] == "guest-sync-delimited":
            reply = junk + b"\xff" + json.dumps({"return": request["arguments"]["id"]}).encode() + b"\n"
        else:
            reply = b'{"return": {}}\n'
        writer.write(reply[:5])
        await writer.drain()
        writer.write(reply[5:])
        await writer.drain()


def test_a_stale_half_reply_before_the_sync_marker_is_dropped() -> None:
    async def agent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await answer_syncs(r, w, junk=b'{"return": {"out-data": "AAAA')

    assert asyncio.run(scripted_agent(agent, lambda c: c.ping())) >= 0


def test_an_agent_that_never_answers_gives_petri_timeout_naming_the_sync() -> None:
    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read()

    with pytest.raises(PetriTimeout, match="guest-sync-delimited within 1 s"):
        asyncio.run(scripted_agent(silent, lambda c: c.sync(timeout=1.0)))


def test_a_closed_channel_is_an_agent_error_not_a_hang() -> None:
    async def hang_up(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    async def use(client: QgaClient) -> None:
        await asyncio.wait_for(client.ping(timeout=5.0), 10.0)

    with pytest.raises(AgentError, match="closed"):
        asyncio.run(scripted_agent(hang_up, use))
