"""Firmware for a guest: SeaBIOS (QEMU's default), qboot, OVMF for UEFI, OVMF secure boot.

qboot is a minimal BIOS for direct kernel boot: no VGA BIOS, no chipset set-up, no
boot menu, and no reboot of its own after a reset, so a reset costs ~10 ms instead of
SeaBIOS's ~120 ms. It serves guests that set up what they need themselves (tmk).

UEFI keeps its variables (boot order, secure-boot keys) in a second flash device.
Each VM gets its own copy of the variable store in its run directory, so resets keep
it, other VMs never see it, and ``AsyncVm.firmware_vars()`` can save it as an
artifact (petri's VMGS analog) to start a later VM from.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ...errors import LaunchError

OVMF_DIR = Path("/usr/share/OVMF")
QBOOT = Path("/usr/share/qemu/qboot.rom")
VARS_FILE = "efivars.fd"


@dataclass(frozen=True)
class Ovmf:
    code: str
    vars: str
    secure: bool


#: Debian's ``ovmf`` builds (4 MiB flash layout).
OVMF = {
    "uefi": Ovmf("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd", secure=False),
    # Secure boot on, with Microsoft's keys enrolled (so shim-signed loaders boot).
    "uefi-secure": Ovmf("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd", secure=True),
}


def firmware_args(firmware: str, rundir: Path, saved_vars: Path | None = None) -> list[str]:
    """Command line for ``firmware``; for UEFI, copies the variable store into ``rundir``."""
    if firmware == "bios":
        return []
    if firmware == "qboot":
        if not QBOOT.is_file():
            raise LaunchError(f"firmware='qboot' needs {QBOOT}, which does not exist "
                              "(install it with: sudo apt-get install qemu-system-data)")
        return ["-bios", str(QBOOT)]
    ovmf = OVMF[firmware]
    code = OVMF_DIR / ovmf.code
    template = saved_vars if saved_vars is not None else OVMF_DIR / ovmf.vars
    for path in (code, template):
        if path is saved_vars and path.exists() and not path.is_file():
            raise LaunchError(f"firmware_vars {path} is not a file (a directory?): give the saved variable "
                              "store's file (vm.firmware_vars() written to disk)")
        if not path.is_file():
            hint = "" if path is saved_vars else " (install it with: sudo apt-get install ovmf)"
            raise LaunchError(f"firmware={firmware!r} needs {path}, which does not exist{hint}")
    store = rundir / VARS_FILE
    shutil.copyfile(template, store)
    args = ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={store}"]
    if ovmf.secure:  # the secure-boot build needs SMM so the OS cannot rewrite the variables
        args += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    return args


def machine_options(firmware: str) -> str:
    """Extra ``-machine`` options the firmware needs."""
    return ",smm=on" if firmware in OVMF and OVMF[firmware].secure else ""


def reboots_itself_after_reset(firmware: str) -> bool:
    """Whether the firmware reboots once more on its own after a host reset.

    SeaBIOS finds its RAM already initialised after any reset and does a hard reboot
    ("Attempting a hard reboot"), which a host reset must absorb. qboot starts the kernel
    straight away, and so does OVMF (measured: only the host's RESET event, so the bounded
    wait cost every UEFI reset 5 s). The secure-boot build is not measured yet and keeps it."""
    return firmware in ("bios", "uefi-secure")


def has_variable_store(firmware: str) -> bool:
    """UEFI firmwares keep variables in a flash store of their own."""
    return firmware in OVMF
