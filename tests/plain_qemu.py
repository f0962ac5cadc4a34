"""QEMU started with a plain command line for the fixture-image tests (no petri_nb runtime).

The run directory (``tempfile.mkdtemp``) holds every socket and log; nothing listens on
TCP. ``PlainQemu.kill`` is idempotent and the child also dies with this process
(PR_SET_PDEATHSIG, set from the main thread), so fixtures cannot leak QEMU.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
OVMF_SECBOOT_CODE = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
OVMF_MS_VARS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class PlainQemu:
    """One QEMU process: serial console and firmware debug port (0x402) go to files in its run dir."""

    def __init__(self, disk: Path, firmware: str = "bios", qga: bool = False, qmp: bool = False,
                 memory_mib: int = 256, extra: tuple[str, ...] = ()) -> None:
        self.rundir = Path(tempfile.mkdtemp(prefix="petri-images-"))
        self.serial_log = self.rundir / "serial.log"
        self.firmware_log = self.rundir / "firmware.log"
        self.qga_socket = self.rundir / "qga.sock"
        self.qmp_socket = self.rundir / "qmp.sock"
        machine = "q35,accel=tcg,smm=on" if firmware == "uefi-secure" else "q35,accel=tcg"  # secboot OVMF needs SMM
        argv = ["qemu-system-x86_64", "-machine", machine, "-m", str(memory_mib), "-display", "none",
                "-nic", "none", "-serial", f"file:{self.serial_log}",
                "-chardev", f"file,id=fwdebug,path={self.firmware_log}",
                "-device", "isa-debugcon,iobase=0x402,chardev=fwdebug",
                # snapshot=on: writes go to a temporary overlay, the cached image stays pristine
                "-drive", f"file={disk},format=raw,if=virtio,snapshot=on"]
        if firmware in ("uefi", "uefi-secure"):
            code, vars_ = (OVMF_CODE, OVMF_VARS) if firmware == "uefi" else (OVMF_SECBOOT_CODE, OVMF_MS_VARS)
            shutil.copyfile(vars_, self.rundir / "vars.fd")
            argv += ["-drive", f"if=pflash,format=raw,readonly=on,file={code}",
                     "-drive", f"if=pflash,format=raw,file={self.rundir / 'vars.fd'}"]
            if firmware == "uefi-secure":
                argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        if qga:
            argv += ["-device", "virtio-serial-pci",
                     "-chardev", f"socket,id=qga,path={self.qga_socket},server=on,wait=off",
                     "-device", "virtserialport,chardev=qga,name=org.qemu.guest_agent.0"]
        if qmp:
            argv += ["-qmp", f"unix:{self.qmp_socket},server=on,wait=off"]
        self.argv = argv + list(extra)
        self.started = time.monotonic()
        with open(self.rundir / "stderr.log", "wb") as stderr:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=stderr, preexec_fn=_die_with_parent)

    def serial(self) -> str:
        return self.serial_log.read_text(errors="replace") if self.serial_log.exists() else ""

    def firmware(self) -> str:
        return self.firmware_log.read_text(errors="replace") if self.firmware_log.exists() else ""

    def wait_for(self, read: str, pattern: str, timeout: float) -> float:
        """Poll a log (``"serial"`` or ``"firmware"``) until ``pattern`` appears; seconds since start."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, getattr(self, read)()):
            if self.proc.poll() is not None:
                raise AssertionError(f"QEMU exited ({self.proc.returncode}) before {pattern!r} appeared: "
                                     f"{(self.rundir / 'stderr.log').read_text()[-500:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} did not appear on the {read} log within {timeout} s; tail: "
                                     f"{getattr(self, read)()[-800:]!r}")
            time.sleep(0.02)
        return time.monotonic() - self.started

    def wait_for_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.rundir, ignore_errors=True)
