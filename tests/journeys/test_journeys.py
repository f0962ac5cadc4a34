"""User journeys: what one kind of user does in one sitting, end to end, in a real Jupyter kernel.

Each journey goes through the public API and the ``%petri`` magics only, on files the user
brings (made from Debian's packages by ``own_files``; tmk only where the journey is about
tmk). Each of issue 22's seams broke one of these on the way: a journey that fails names a
gesture that a new user's first sitting would break on.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nbrun import run_notebook, text_of
from own_files import MY_READY, debian_kernel, grub_rescue_iso, my_initrd, uefi_disk

pytestmark = [pytest.mark.slow, pytest.mark.journey]

#: Seconds each journey took (printed; ``pytest --durations`` shows them too).
TIMES: dict[str, float] = {}


def journey(name: str, cells: list[str], workdir: Path, timeout: float = 240) -> list[str]:
    """Run the journey's cells in a fresh kernel; each cell's text. A cell that raised fails it."""
    start = time.monotonic()
    nb = run_notebook(cells, workdir, timeout=timeout, name=f"{name}.ipynb")
    TIMES[name] = time.monotonic() - start
    print(f"journey {name}: {TIMES[name]:.1f} s")
    return [text_of(cell) for cell in nb.cells]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kernel_developer_boots_own_kernel_crashes_it_reads_the_diagnosis_resets_and_types_again(tmp_path):
    kernel = shutil.copy(debian_kernel(), tmp_path / "vmlinuz")
    initrd = my_initrd(tmp_path)
    out = journey("kernel_developer", [
        "import petri_nb\n%load_ext petri_nb",
        # No GUEST: the files given describe the guest (issue 22 #1: this booted tmk).
        f"vm = %petri launch --kernel {kernel} --initrd {initrd} --append 'console=ttyS0 panic=0' "
        f"--ready '{MY_READY}' --name mine\nprint(vm.guest.name, vm.guest.kernel)",
        "%petri expect 'ready on (\\S+)'",  # the banner readiness waited for is still there to expect
        "%petri send echo c > /proc/sysrq-trigger",
        "halt = %petri wait-halt --timeout 60\nprint(halt.reason.name)\nprint(halt.diagnosis.oops.message)\n"
        "print(halt.diagnosis.oops.call_trace[:4])",
        # Reset, then type at once (issue 22 #2: the line was lost before the guest listened).
        "%%petri\nreset\nsend echo alive again\nexpect 'alive again'",
        "print(vm.state, vm.timeline().query(\"kind == 'ready'\")['detail'].tolist())",
        "%petri teardown",
    ], tmp_path)
    assert str(kernel) in out[1] and "tmk" not in out[1]
    assert "amd64" in out[2]
    assert out[4].splitlines()[:2] == ["PANIC", "Kernel panic - not syncing: sysrq triggered crash"]
    assert "sysrq_handle_crash" in out[4]
    assert "after launch" in out[6] and "after reset()" in out[6] and out[6].startswith("running")


def test_firmware_developer_boots_a_uefi_disk_watches_boot_events_saves_the_variable_store_and_boots_from_it(
        tmp_path):
    disk = shutil.copy(uefi_disk(), tmp_path / "my.img")
    before = sha256(disk)
    out = journey("firmware_developer", [
        "import petri_nb\n%load_ext petri_nb",
        "vm = %petri launch --disk my.img --firmware uefi --memory 256 --ready boot --name fw\nprint(vm.guest.name)",
        "events = [vm.wait_for_boot_event(timeout=60) for _ in range(2)]\n"
        "print([(e.kind, e.firmware) for e in events])",
        "open('vars.fd', 'wb').write(vm.firmware_vars())\n%petri teardown",
        "again = %petri launch --disk my.img --firmware uefi --firmware-vars vars.fd --memory 256 --ready boot "
        "--name fw2\nprint([e.kind for e in again.boot_events])",
        "%petri teardown",
    ], tmp_path)
    assert "tmk" not in out[1]
    assert out[2] == "[('attempt', 'ovmf'), ('success', 'ovmf')]\n", out[2]
    assert "success" in out[4]
    assert sha256(disk) == before  # the user's image is never written
    assert (tmp_path / "vars.fd").stat().st_size > 0


def test_bootloader_user_boots_an_iso_on_bios_and_reads_the_screen(tmp_path):
    iso = shutil.copy(grub_rescue_iso(), tmp_path / "rescue.iso")
    out = journey("bootloader_user", [
        "import petri_nb\n%load_ext petri_nb",
        "%petri launch --cdrom rescue.iso --firmware bios --name rescue",
        # The title is drawn before the entries: wait for both (under load one poll can fall between).
        r"%petri wait-screen --text 'GNU GRUB[\s\S]*GNU/Linux' --timeout 60",
        "%petri screen-text",
        "%petri teardown",
    ], tmp_path)
    assert "GNU GRUB  version" in out[3]
    assert "GNU/Linux" in out[3]
    assert sha256(Path(iso)) == sha256(grub_rescue_iso())


def test_fleet_user_runs_two_fleets_reports_them_and_compares_them(tmp_path):
    out = journey("fleet_user", [
        "import petri_nb\nfrom petri_nb import fleet\n%load_ext petri_nb",
        "%petri fleet halt-each -n 4 --workers 2 --rundir fleets/qboot",
        "bios = fleet.run('halt-each', runs=4, firmware='bios', rundir='fleets/bios', progress=False)\n"
        "print(bios.outcomes['status'].tolist())",
        # A fleet's folder is a set of runs wherever runs are taken (issue 22 #4).
        "print(len(petri_nb.read_timelines('fleets/qboot')['run'].unique()))",
        "petri_nb.runs_report('fleets', 'report.html')",
        "c = petri_nb.compare('fleets/qboot', 'fleets/bios', 'boot_to_ready')\nprint(c[['metric', 'verdict']])",
        "print(petri_nb.flakiness('fleets'))",
    ], tmp_path, timeout=300)
    assert "ok" in out[2] and "error" not in out[2]
    assert out[3].strip() == "4"
    report = (tmp_path / "report.html").read_text()
    assert "8 runs" in report
    assert "boot_to_ready" in out[5]  # qboot boots tmk faster than SeaBIOS does
    # The same report from a terminal, by the CLI, of one fleet's folder.
    cli = Path(sys.executable).with_name("petri-nb")
    done = subprocess.run([str(cli), "runs-report", str(tmp_path / "fleets" / "bios"), "--out",
                           str(tmp_path / "bios.html")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "4 runs" in (tmp_path / "bios.html").read_text()


def test_time_traveller_records_a_crash_replays_it_continues_to_the_end_and_steps_back(tmp_path):
    out = journey("time_traveller", [
        "import petri_nb\n%load_ext petri_nb",
        "%petri record tmk --name rec",
        "%petri send triplefault",
        "%petri wait-halt --timeout 30",
        "r = %petri replay",
        # Run to the crash, then step back: the gdb user's gesture (issue 22 #3: it killed QEMU).
        "%petri continue",
        "halt = %petri wait-halt --timeout 120\nend = r.icount()\nhalt",
        "%petri rstep",
        "%petri rstep",
        "print(r.state, r.icount() == end - 2)",
        "%petri dis -n 1",
        "%petri teardown --all",
    ], tmp_path)
    assert "TRIPLE_FAULT" in out[3] and "TRIPLE_FAULT" in out[6]
    assert out[9].strip() == "paused True", out[9]



def test_iterating_developer_relaunches_a_uefi_disk_from_the_boot_cache_crashes_it_and_relaunches(tmp_path):
    disk = shutil.copy(uefi_disk(), tmp_path / "my.img")
    before = sha256(Path(disk))
    launch = ("vm = %petri launch --disk my.img --firmware uefi --memory 256 --ready 'petri-images: ready' "
              "--cached --name it{n}\nprint(vm.run_meta['boot_cache'])")
    crash = ("%petri send echo c > /proc/sysrq-trigger\n"
             "halt = %petri wait-halt --timeout 60\nprint(halt.reason.name)\n%petri teardown")
    out = journey("iterating_developer", [
        f"import os, time\nos.environ['PETRI_NB_BOOT_CACHE'] = {str(tmp_path / 'cache')!r}\n%load_ext petri_nb",
        launch.format(n=1), crash,
        "t0 = time.monotonic()\n" + launch.format(n=2) + "\nprint(f'{time.monotonic() - t0:.2f}')",
        "%petri expect 'petri-images: ready'\nprint(len(vm.boot_events))", crash,
        "print(vm.timeline().query(\"kind == 'ready'\")['detail'].tolist())",
        "import subprocess, sys\nprint(subprocess.run([sys.executable, '-m', 'petri_nb.cli', 'cache', 'ls'], "
        "capture_output=True, text=True).stdout)",
    ], tmp_path)
    # (a cell's text also holds the launch's progress line, on stderr)
    assert out[1].strip().endswith("stored") and out[2].strip() in ("PANIC", "RESET")
    assert out[3].splitlines()[-2].endswith("hit") and float(out[3].splitlines()[-1]) < 5
    assert int(out[4].split()[-1]) >= 1  # the skipped boot's boot events are there
    assert out[5].strip() == out[2].strip()  # a guest from the cache crashes like a booted one
    assert "(from boot cache)" in out[6]
    assert "1 entries" in out[7]
    assert sha256(Path(disk)) == before
