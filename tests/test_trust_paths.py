"""Attacks on the command line through paths: a comma (or space) in a path must never make QEMU
open another file. Each path-valued Guest field gets a path whose prefix up to the comma names a
decoy; QEMU must open exactly the given file, or launch must refuse with a LaunchError naming the field."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import petri_nb
from petri_nb import Disk, LaunchError
from petri_nb.backends.qemu import rundirs
from petri_nb.guests.tmk import KERNEL

TRAP = "a.img,format=raw"  # QEMU splitting at the comma would open the decoy "a.img"


def _open_files(vm: petri_nb.Vm) -> set[str]:
    fds = Path(f"/proc/{vm.aio.runtime.pid}/fd")
    return {os.readlink(fd) for fd in fds.iterdir() if not os.readlink(fd).startswith(("socket:", "pipe:", "anon"))}


@pytest.fixture
def trap(tmp_path: Path) -> tuple[Path, Path]:
    """(the comma path, its decoy), both small raw images."""
    (tmp_path / "a.img").write_bytes(b"decoy" * 1000)
    (tmp_path / TRAP).write_bytes(b"\0" * (1 << 20))
    return tmp_path / TRAP, tmp_path / "a.img"


def test_a_comma_in_the_initrd_path_is_refused_not_split(trap: tuple[Path, Path]) -> None:
    with pytest.raises(LaunchError, match=r"initrd path .* contains ','"):
        petri_nb.launch("tmk", initrd=trap[0]).teardown()
    spaced = trap[0].with_name("a.img with space")
    shutil.copyfile(trap[0], spaced)  # a multiboot module list also splits at a space
    with pytest.raises(LaunchError, match=r"initrd path .* contains ' '"):
        petri_nb.launch("tmk", initrd=spaced).teardown()


def test_a_comma_in_the_kernel_path_boots_exactly_that_kernel(tmp_path: Path) -> None:
    kernel = tmp_path / "tmk.elf,format=raw"
    shutil.copyfile(KERNEL, kernel)
    (tmp_path / "tmk.elf").write_bytes(b"not a kernel")  # the decoy would not boot
    with petri_nb.launch("tmk", kernel=kernel) as vm:  # -kernel is taken whole: no separator
        assert "tmk: ready" in vm.console.text


@pytest.mark.parametrize("writable", [False, True])
def test_a_comma_in_a_disk_path_opens_exactly_that_disk(trap: tuple[Path, Path], writable: bool) -> None:
    with petri_nb.launch("tmk", disks=[Disk(trap[0], writable=writable)]) as vm:
        opened = _open_files(vm)
        assert str(trap[0]) in opened and str(trap[1]) not in opened


def test_a_comma_in_the_cdrom_path_opens_exactly_that_image(trap: tuple[Path, Path]) -> None:
    with petri_nb.launch("tmk", cdrom=trap[0]) as vm:
        opened = _open_files(vm)
        assert str(trap[0]) in opened and str(trap[1]) not in opened


def test_a_comma_in_the_firmware_vars_path_loads_exactly_that_store(tmp_path: Path) -> None:
    saved = tmp_path / "vars.fd,format=qcow2"
    shutil.copyfile("/usr/share/OVMF/OVMF_VARS_4M.fd", saved)
    with saved.open("r+b") as f:
        f.seek(4096)
        f.write(b"petri-marker")  # in the variable store's data, so the copy is told apart
    with petri_nb.launch("tmk", firmware="uefi", firmware_vars=saved, ready=None) as vm:
        assert (vm.aio.runtime.rundir / "efivars.fd").read_bytes() == saved.read_bytes()


def test_symbols_never_reach_qemu(tmp_path: Path) -> None:
    symbols = tmp_path / "tmk.elf,x"
    shutil.copyfile(KERNEL, symbols)
    with petri_nb.launch("tmk", symbols=symbols) as vm:
        assert not any(str(symbols) in a for a in vm.aio.runtime.argv)


def test_every_path_valued_guest_field_is_covered_above() -> None:
    fields = {f.name for f in petri_nb.Guest.__dataclass_fields__.values() if "Path" in str(f.type)}
    assert fields == {"kernel", "initrd", "cdrom", "firmware_vars", "symbols"}  # disks: tested through Disk


def test_a_comma_in_tmpdir_is_refused_early_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "tmp,dir"
    base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    monkeypatch.setattr(rundirs._reaped, "is_set", lambda: True)
    with pytest.raises(LaunchError, match=r"TMPDIR.* contains a comma"):
        petri_nb.launch("tmk").teardown()
    assert not [p for p in base.iterdir() if p.name.startswith("petri_nb-tmk")]

