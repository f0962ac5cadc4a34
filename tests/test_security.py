"""Untrusted guests and bad input: escaped HTML, private sockets, no TCP, PetriError for any option."""

from __future__ import annotations

import os
import stat
import subprocess

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import petri_nb

PAYLOADS = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "\x1b[31mred\x1b[0m"]


def test_guest_html_payloads_are_escaped_in_the_html_reprs(vm: petri_nb.Vm):
    for payload in PAYLOADS:
        vm.console.write(f"echo {payload}\n")
    vm.console.expect("red", timeout=10)
    vm.console.expect(r"\n", timeout=10)
    assert "<script>alert(1)</script>" in vm.console.text  # kept verbatim, escaped when rendered
    html = vm.timeline().to_html()
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    for obj in (vm, vm.aio, vm.console):
        rendered = getattr(obj, "_repr_html_", lambda: "")() or ""
        assert "<script>" not in rendered and "<img src=x" not in rendered


def test_sockets_live_in_a_private_directory_owned_by_the_user(vm: petri_nb.Vm):
    rundir = vm.aio.runtime.rundir
    info = rundir.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == os.getuid()
    socks = [p for p in rundir.iterdir() if stat.S_ISSOCK(p.stat().st_mode)]
    assert {"qmp.sock", "console.sock"} <= {p.name for p in socks}


def test_qemu_listens_on_no_network_port(vm: petri_nb.Vm):
    qemu = psutil.Process(vm.aio.runtime.proc.pid)
    assert qemu.name().startswith("qemu-system")
    assert qemu.net_connections(kind="inet") == []


@pytest.mark.skipif(os.getuid() != 0, reason="switching to another uid needs root")
def test_another_user_cannot_connect_to_the_vm_sockets(vm: petri_nb.Vm):
    rundir = vm.aio.runtime.rundir
    probe = (
        "import socket, sys\n"
        "for path in sys.argv[1:]:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n"
        "        s.connect(path)\n"
        "        print('CONNECTED', path)\n"
        "    except PermissionError:\n"
        "        print('DENIED', path)\n"
    )
    paths = [str(rundir / "qmp.sock"), str(rundir / "console.sock")]
    out = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", probe, *paths],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["DENIED", paths[0], "DENIED", paths[1]]


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True),
    st.text(max_size=12), st.lists(st.text(max_size=6), max_size=3), st.binary(max_size=4),
)
_options = st.dictionaries(
    st.sampled_from(["accel", "memory_mib", "cpus", "extra_args", "kernel", "binary", "name", "colour"]),
    _values, max_size=3,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(guest=st.one_of(st.just("tmk"), st.text(max_size=8), st.integers()), options=_options)
def test_any_launch_options_give_a_vm_or_a_petri_error_never_another_exception(guest, options):
    try:
        vm = petri_nb.launch(guest, **options)
    except petri_nb.PetriError as e:
        assert str(e)
    else:
        vm.teardown()
