"""launch(boot_cache=True): a hit is a usable guest, any change misses, damage rebuilds, one entry per guest."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import warnings
from pathlib import Path

import pytest

import petri_nb
from petri_nb import cli
from petri_nb.errors import BadArgument, NotSupported
from petri_nb.guests.tmk import KERNEL
from petri_nb.records import boot_cache as store
from petri_nb.runtime.loop import run_blocking


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> store.BootCache:
    root = tmp_path / "boot-cache"
    monkeypatch.setenv("PETRI_NB_BOOT_CACHE", str(root))
    return store.BootCache(root)


def _ready_rows(vm: petri_nb.Vm) -> list[str]:
    frame = vm.timeline()
    return frame[frame["kind"].isin(["ready", "boot cache stored", "boot cache refused"])]["detail"].tolist()


def _launch(**options: object) -> petri_nb.Vm:
    return petri_nb.launch("tmk", boot_cache=True, **options)


def test_a_hit_starts_where_the_first_boot_was_ready_and_the_guest_answers(cache: store.BootCache):
    with _launch() as first:
        assert first.run_meta["boot_cache"] == "stored"
        assert any("boot skipped next time" in d for d in _ready_rows(first))
        first.console.write("count\n")
        first.console.expect(r"count=1")
    for expected in (1, 1):  # every hit starts from the same moment: the counter was never bumped
        with _launch() as vm:
            assert vm.run_meta["boot_cache"] == "hit"
            assert any(d.endswith("(from boot cache)") for d in _ready_rows(vm))
            vm.console.expect("tmk: ready")  # what the skipped boot printed is there, as after a boot
            vm.console.write("count\n")
            vm.console.expect(rf"count={expected}\b")
            vm.console.write("panic\n")
            assert vm.wait_for_halt(timeout=30).reason is petri_nb.HaltReason.PANIC
            vm.reset()  # a restored VM resets into a real boot
            vm.console.write("count\n")
            vm.console.expect(r"count=1\b")
    (entry,) = cache.entries()
    assert entry.manifest["hits"] == 2


def test_a_changed_option_or_kernel_file_misses(cache: store.BootCache, tmp_path: Path):
    kernel = Path(shutil.copy(KERNEL, tmp_path / "tmk.elf"))
    outcomes = []
    for change in ({}, {}, {"memory_mib": 48}, "touch", {"append": "x"}):
        if change == "touch":
            st = kernel.stat()
            os.utime(kernel, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
            change = {}
        with _launch(kernel=kernel, **change) as vm:
            outcomes.append(vm.run_meta["boot_cache"])
    assert outcomes == ["stored", "hit", "stored", "stored", "stored"]
    assert len(cache.entries()) == 4


def test_a_rewritten_disk_image_misses_and_is_never_written_by_the_cache(cache: store.BootCache, tmp_path: Path):
    image = tmp_path / "data.img"
    image.write_bytes(b"\1" * (1 << 20))
    outcomes = []
    for rewrite in (False, False, True, False):
        if rewrite:
            image.write_bytes(b"\2" * (1 << 20))  # same size, new content (and mtime)
        digest = hashlib.sha256(image.read_bytes()).hexdigest()
        with _launch(disks=[image]) as vm:
            outcomes.append(vm.run_meta["boot_cache"])
        assert hashlib.sha256(image.read_bytes()).hexdigest() == digest
    assert outcomes == ["stored", "hit", "stored", "hit"]


def test_a_guest_field_that_does_not_shape_the_machine_keeps_the_hit(cache: store.BootCache):
    with _launch():
        pass
    with _launch(ready_timeout=11.0) as vm:
        assert vm.run_meta["boot_cache"] == "hit"


@pytest.mark.parametrize("where", ["checked at lookup", "checked while loading"])
def test_a_damaged_entry_is_discarded_with_a_warning_and_rebuilt(cache: store.BootCache, where: str,
                                                                  monkeypatch: pytest.MonkeyPatch):
    with _launch():
        pass
    (entry,) = cache.entries()
    state = entry.path("state.bin")
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the checksum can tell
    state.write_bytes(bytes(data))
    if where == "checked while loading":
        monkeypatch.setattr(store, "CHECK_AT_LOOKUP", 0)  # every file is "large": verified beside the load
    with pytest.warns(UserWarning, match="damaged|refused"):
        with _launch() as vm:
            assert vm.run_meta["boot_cache"] == "stored"  # booted normally, and stored a whole entry again
            vm.console.write("count\n")
            vm.console.expect(r"count=1\b")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with _launch() as vm:
            assert vm.run_meta["boot_cache"] == "hit"


def test_a_truncated_or_unreadable_entry_rebuilds(cache: store.BootCache):
    with _launch():
        pass
    (entry,) = cache.entries()
    with open(entry.path("state.bin"), "r+b") as f:
        f.truncate(100)
    with pytest.warns(UserWarning, match="damaged"), _launch() as vm:
        assert vm.run_meta["boot_cache"] == "stored"
    (entry,) = cache.entries()
    entry.path(store.MANIFEST).write_text("{not json")
    with pytest.warns(UserWarning, match="damaged"), _launch() as vm:
        assert vm.run_meta["boot_cache"] == "stored"


def test_two_concurrent_launches_of_one_guest_make_one_entry(cache: store.BootCache):
    async def both() -> list[petri_nb.AsyncVm]:
        return list(await asyncio.gather(*(petri_nb.launch_async("tmk", boot_cache=True) for _ in range(2))))

    vms = run_blocking(both())
    try:
        assert sorted(vm.run_meta["boot_cache"] for vm in vms) == ["miss", "stored"]
    finally:
        for vm in vms:
            run_blocking(vm.teardown())
    assert len(cache.entries()) == 1
    assert not [p for p in cache.root.iterdir() if p.name.startswith(".building")]


def test_the_store_evicts_the_least_recently_used_entry_past_its_bound(cache: store.BootCache, tmp_path: Path):
    kernels = [Path(shutil.copy(KERNEL, tmp_path / f"tmk{i}.elf")) for i in range(3)]
    for kernel in kernels:
        with _launch(kernel=kernel):
            pass
    sizes = [e.size for e in cache.entries()]
    assert len(sizes) == 3
    with _launch(kernel=kernels[0]) as vm:  # now the most recently used
        assert vm.run_meta["boot_cache"] == "hit"
    bounded = store.BootCache(cache.root, limit=sum(sizes) - 1)
    removed = bounded.evict()
    assert len(removed) == 1 and len(bounded.entries()) == 2
    with _launch(kernel=kernels[0]) as vm:
        assert vm.run_meta["boot_cache"] == "hit"  # the evicted one was kernel 1's, used least recently
    with _launch(kernel=kernels[1]) as vm:
        assert vm.run_meta["boot_cache"] == "stored"


def test_guests_the_cache_cannot_hold_are_refused_by_name(cache: store.BootCache, tmp_path: Path):
    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * (1 << 20))
    for options, why in (({"record": True}, "record=True"), ({"tpm": True}, "tpm=True"),
                         ({"disks": [petri_nb.Disk(image, writable=True)]}, "writable")):
        with pytest.raises(NotSupported, match=why):
            petri_nb.launch("tmk", boot_cache=True, **options)
    with pytest.raises(BadArgument, match=r"launch\(\): boot_cache must be bool, not .yes."):
        petri_nb.launch("tmk", boot_cache="yes")
    assert not cache.root.exists() or not cache.entries()


def test_missing_files_are_the_same_launch_errors_with_the_cache(cache: store.BootCache, tmp_path: Path):
    for options in ({"disks": [tmp_path / "no.img"]}, {"kernel": tmp_path / "no.elf"}, {"disks": [tmp_path]}):
        with pytest.raises(petri_nb.LaunchError) as plain:
            petri_nb.launch(**options)
        with pytest.raises(petri_nb.LaunchError) as cached:
            petri_nb.launch(boot_cache=True, **options)
        assert str(cached.value) == str(plain.value)


def test_cache_ls_and_clear_from_the_command_line(cache: store.BootCache, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["cache", "ls"]) == 0
    assert "no boot cache entries" in capsys.readouterr().out
    with _launch():
        pass
    assert cli.main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert "tmk" in out and "1 entries" in out
    assert cli.main(["cache", "clear"]) == 0
    assert "removed 1" in capsys.readouterr().out
    assert cache.entries() == []


def test_compare_warns_when_cached_and_booted_runs_are_mixed(cache: store.BootCache, tmp_path: Path):
    frames = []
    for _ in range(2):
        with _launch() as vm:
            frames.append(vm.timeline().assign(boot_cache=vm.run_meta["boot_cache"]))
    with pytest.warns(UserWarning, match="mix 1 runs started from the boot cache with 1 that booted"):
        petri_nb.compare(frames[0], frames[1], "boot_to_ready")


@pytest.mark.slow
def test_a_bios_disk_with_qemu_ga_hits_answers_its_agent_and_its_image_is_never_written(cache: store.BootCache,
                                                                                        tmp_path: Path):
    from petri_nb.guests.images import READY, bios_disk

    disk = Path(shutil.copy(bios_disk(), tmp_path / "my.img"))
    before = hashlib.sha256(disk.read_bytes()).hexdigest()
    options = {"disks": [disk], "firmware": "bios", "ready": READY, "memory_mib": 256, "agent": "qga"}
    with petri_nb.launch(boot_cache=True, **options) as vm:
        assert vm.run_meta["boot_cache"] == "stored"
        vm.agent.write_file("/dev/vda", b"written by the first boot")  # into the overlay, not my.img
    for _ in range(2):
        with petri_nb.launch(boot_cache=True, **options) as vm:
            assert vm.run_meta["boot_cache"] == "hit"
            assert vm.agent.run("echo hello from a restored guest").stdout == b"hello from a restored guest\n"
            head = vm.agent.run("head -c 25 /dev/vda").stdout
            assert head != b"written by the first boot"  # the entry was taken at ready, before that write
            vm.agent.write_file("/dev/vda", b"written by a restored one")
            assert vm.agent.run("head -c 25 /dev/vda").stdout == b"written by a restored one"
            assert len(vm.boot_events) >= 1  # the skipped boot's events are there
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == before


def test_the_magic_launches_from_the_cache_with_cached(cache: store.BootCache, shell):
    outcomes = []
    for _ in range(2):
        vm = shell.run_line_magic("petri", "launch tmk --cached")
        outcomes.append(vm.run_meta["boot_cache"])
        shell.run_line_magic("petri", "teardown")
    vm = shell.run_line_magic("petri", "launch tmk")
    outcomes.append(vm.run_meta["boot_cache"])
    assert outcomes == ["stored", "hit", None]


def test_saved_runs_and_their_report_say_which_came_from_the_cache(cache: store.BootCache, tmp_path: Path):
    runs = tmp_path / "runs"
    for _ in range(2):
        with _launch() as vm:
            vm.save_timeline(runs)
    frame = petri_nb.read_timelines(runs)
    assert sorted(frame.groupby("run")["boot_cache"].first()) == ["hit", "stored"]
    html = petri_nb.runs_report(runs, tmp_path / "report.html").read_text()
    assert "<th>boot_cache</th>" in html and "<td>hit</td>" in html
