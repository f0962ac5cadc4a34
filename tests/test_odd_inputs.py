"""Odd launch inputs (issue 27): each is one clear LaunchError, fast, and nothing else is lost
(no QEMU, no run dir, the name free); a valid relative path works although QEMU runs elsewhere."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import our_qemus

import petri_nb
from petri_nb.backends.qemu import rundirs
from petri_nb.guests.tmk import KERNEL
from petri_nb.vm import registry

FAST = 5.0


@pytest.fixture
def refused() -> Iterator[None]:
    """The launch inside is refused quickly and leaves nothing behind."""
    start = time.monotonic()
    before = set(Path(tempfile.gettempdir()).glob(f"{rundirs.PREFIX}odd-*"))
    yield
    assert time.monotonic() - start < FAST
    assert not our_qemus()
    assert set(Path(tempfile.gettempdir()).glob(f"{rundirs.PREFIX}odd-*")) == before
    assert "odd" not in registry._live


def test_relative_kernel_and_initrd_are_the_callers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    shutil.copyfile(KERNEL, tmp_path / "k.elf")
    (tmp_path / "initrd.img").write_bytes(b"\0" * 512)
    monkeypatch.chdir(tmp_path)
    guest = petri_nb.Guest(kernel="k.elf", initrd="./initrd.img")
    assert guest.kernel == tmp_path / "k.elf" and guest.initrd == tmp_path / "initrd.img"
    with petri_nb.launch("tmk", kernel="k.elf", initrd="initrd.img", name="odd") as vm:
        assert vm.state == "running"


def test_a_zero_length_kernel_is_named(tmp_path: Path, refused: None):
    (tmp_path / "empty.elf").touch()
    with pytest.raises(petri_nb.LaunchError, match=r"^kernel image .*empty.elf is empty \(0 bytes\)$"):
        petri_nb.launch("tmk", kernel=tmp_path / "empty.elf", name="odd")


def test_firmware_vars_given_as_a_directory(tmp_path: Path, refused: None):
    with pytest.raises(petri_nb.LaunchError, match=r"^firmware_vars .* is not a file \(a directory\?\)"):
        petri_nb.launch("tmk", firmware="uefi", ready=None, firmware_vars=tmp_path, name="odd")


def test_a_disk_given_twice_as_writable(tmp_path: Path, refused: None):
    image = tmp_path / "d.img"
    image.write_bytes(b"\0" * 1024 * 1024)
    with pytest.raises(petri_nb.LaunchError, match=r"d.img is given twice and writable"):
        petri_nb.launch(disks=[petri_nb.Disk(image, writable=True), petri_nb.Disk(str(image), writable=True)],
                        name="odd")


def test_a_tmpdir_too_long_for_sockets_names_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    refused: None):
    long = tmp_path / ("t" * 90)
    long.mkdir()
    monkeypatch.setenv("TMPDIR", str(long))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches the temp dir it chose
    with pytest.raises(petri_nb.LaunchError, match=r"\(TMPDIR, \d+ bytes\) is too long for the VM's sockets"):
        petri_nb.launch("tmk", name="odd")
    assert not list(long.iterdir())


def test_the_longest_socket_name_fits_the_budget():
    from petri_nb.backends import view
    from petri_nb.backends.qemu import agent_port, command, tpm

    names = ["qmp.sock", "console.sock", command.GDB_SOCKET, agent_port.SOCKET, tpm.SOCKET,
             *view.VIEW_SOCKETS.values()]
    assert max(map(len, names)) <= rundirs.LONGEST_SOCKET


def test_temporary_recordings_of_a_dead_process_are_reaped_saved_ones_kept(tmp_path: Path):
    import os
    import subprocess
    import sys

    vm = petri_nb.launch("tmk", record=True, name="odd")
    kept = petri_nb.launch("tmk", record=True, name="kept")
    kept.save_timeline(tmp_path)
    vm.teardown()
    kept.teardown()
    temporary = vm.recording
    assert temporary.name.startswith(f"{rundirs.PREFIX}rec-odd-") and (temporary / rundirs.OWNER).is_file()
    assert kept.recording.parent.parent == tmp_path and not (kept.recording / rundirs.OWNER).exists()
    assert temporary not in rundirs.reap_orphans(temporary.parent)  # its owner (this process) lives
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (temporary / rundirs.OWNER).write_text(f"{dead.stdout.strip()} 1\n")
    assert temporary in rundirs.reap_orphans(temporary.parent)
    assert not temporary.exists() and os.path.isdir(kept.recording)
