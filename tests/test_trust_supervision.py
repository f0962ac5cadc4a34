"""Attacks on supervision: extra_args that would leave QEMU running after teardown, or listening on TCP."""

from __future__ import annotations

import time

import pytest

import petri_nb
from petri_nb import LaunchError
from tests.conftest import our_qemus

REFUSED = [
    ("-daemonize",), ("--daemonize",), ("-runas", "nobody"), ("-chroot", "/"), ("-readconfig", "/tmp/x.cfg"),
    ("-qmp", "tcp:127.0.0.1:4444,server=on,wait=off"), ("-monitor", "telnet:127.0.0.1:4445,server=on,wait=off"),
    ("-chardev", "socket,id=evil,host=127.0.0.1,port=4446,server=on,wait=off"),
    ("-serial", "tcp::4447,server=on,wait=off"), ("-gdb", "tcp::1234"), ("-vnc", ":5"),
    ("-vnc", "unix:/tmp/x.sock,websocket=on"), ("-incoming", "tcp:127.0.0.1:4448"),
    ("-netdev", "user,id=n9,hostfwd=tcp::2222-:22"), ("-set", "chardev.console.port=4449"),
]


@pytest.mark.parametrize("args", REFUSED, ids=" ".join)
def test_options_that_break_supervision_are_refused_before_qemu_starts(args: tuple[str, ...]) -> None:
    t0 = time.monotonic()
    with pytest.raises(LaunchError, match=f"extra_args option {args[0]}.* refused"):
        vm = petri_nb.launch("tmk", extra_args=args)
        vm.teardown()  # reached only if the attack got through
    assert time.monotonic() - t0 < 2.0
    assert our_qemus() == []


def test_harmless_extra_args_still_launch() -> None:
    with petri_nb.launch("tmk", extra_args=("-monitor", "unix:{rundir}/extra.sock,server=on,wait=off",
                                            "-device", "pcie-root-port,id=rp9,chassis=9,bus=pcie.0")) as vm:
        assert (vm.aio.runtime.rundir / "extra.sock").exists()
