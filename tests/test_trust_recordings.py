"""Attacks through a shared recording: recording.json is data, and nothing in it may run a command
or make QEMU read a file outside the recording."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import petri_nb
from petri_nb import PetriError
from petri_nb.backends.qemu.recording import META, SNAPSHOT
from tests.conftest import our_qemus


@pytest.fixture(scope="module")
def recording() -> Iterator[Path]:
    """A real recording of tmk up to its triple fault."""
    vm = petri_nb.launch("tmk", record=True)
    try:
        vm.console.write("triplefault\n")
        vm.wait_for_halt(timeout=30)
    finally:
        vm.teardown()
    assert vm.recording is not None
    yield vm.recording
    shutil.rmtree(vm.recording, ignore_errors=True)


def _tampered(recording: Path, tmp_path: Path, change: dict) -> Path:
    copy = tmp_path / "shared"
    shutil.copytree(recording, copy)
    meta = json.loads((copy / META).read_text())
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(meta.get(key), dict):
            meta[key] = {**meta[key], **value}
        elif value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    (copy / META).write_text(json.dumps(meta))
    return copy


def test_an_old_format_recordings_argv_is_never_run(recording: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    shared = _tampered(recording, tmp_path, {"description": None, "argv": ["/bin/sh", "-c", f"touch {marker}"]})
    with pytest.raises(PetriError, match="older petri_nb.*record it again"):
        petri_nb.replay(shared)
    assert not marker.exists() and our_qemus() == []


def test_an_argv_beside_the_description_is_ignored(recording: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    shared = _tampered(recording, tmp_path, {"argv": ["/bin/sh", "-c", f"touch {marker}"]})
    r = petri_nb.replay(shared)
    try:
        assert r.seek("end") > 1000 and r.disassemble(count=1).loc[0, "mnemonic"] == "int3"
    finally:
        r.teardown()
    assert not marker.exists()


@pytest.mark.parametrize("change, match", [
    ({"description": {"kernel": "/bin/sh"}}, "kernel must name a file inside the recording"),
    ({"description": {"kernel": "../../../../bin/sh"}}, "kernel '.*' is not a file inside the recording"),
    ({"description": {"initrd": "/etc/passwd"}}, "initrd must name a file inside the recording"),
    ({"description": {"binary": "/bin/sh"}}, "fields petri_nb does not replay: binary"),
    ({"description": {"extra_args": ["-daemonize"]}}, "fields petri_nb does not replay: extra_args"),
    ({"description": {"name": "../x"}}, "describes no guest.*guest name"),
    ({"description": {"memory_mib": "lots"}}, "describes no guest.*memory_mib"),
    ({"description": {"append": "a\nb"}}, "describes no guest.*append"),
    ({"description": {"nics": [{"2222": "x"}]}}, "describes no guest"),
    ({"description": {"cpus": 2}}, "one vCPU"),
    ({"description": "rm -rf /"}, "description must be a mapping"),
    ({"accel": "kvm"}, "accel must be 'tcg'"),
    ({"end_icount": "abc"}, "end_icount must be an instruction count"),
    ({"end_icount": [1]}, "end_icount must be an instruction count"),
    ({"halts": "x"}, "halts must be a list"),
])
def test_a_tampered_recording_is_refused_with_a_petri_error(recording: Path, tmp_path: Path, change: dict,
                                                            match: str) -> None:
    with pytest.raises(PetriError, match=match):
        petri_nb.replay(_tampered(recording, tmp_path, change))
    assert our_qemus() == []


def test_a_kernel_symlink_out_of_the_recording_is_refused(recording: Path, tmp_path: Path) -> None:
    shared = _tampered(recording, tmp_path, {})
    (shared / "kernel").unlink()
    (shared / "kernel").symlink_to("/bin/sh")
    with pytest.raises(PetriError, match="kernel 'kernel' is not a file inside the recording"):
        petri_nb.replay(shared)


def test_a_recording_without_its_snapshot_is_one_petri_error(recording: Path, tmp_path: Path) -> None:
    copy = _tampered(recording, tmp_path, {})
    (copy / SNAPSHOT).unlink()
    with pytest.raises(PetriError, match=r"has no snap.qcow2: copy the whole recording directory"):
        petri_nb.replay(copy)


def test_a_recording_whose_log_was_cut_short_warns(recording: Path, tmp_path: Path) -> None:
    copy = _tampered(recording, tmp_path, {})
    log = copy / "replay.bin"
    log.write_bytes(log.read_bytes()[: log.stat().st_size // 2])  # a copy that stopped half-way
    with pytest.warns(RuntimeWarning, match=r"replay.bin has \d+ of the \d+ bytes its QEMU wrote"):
        replay = petri_nb.replay(copy)
    replay.teardown()
