"""The QEMU command line for one VM, built from a config (pure: easy to test and to print)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import LaunchError
from .display import display_args

ACCELS = ("tcg", "kvm", "auto")
#: TCG's translated-code buffer. QEMU's default is 1 GiB, and every reset adds new
#: code (~1.5 MiB for tmk's firmware reboot), so a reset soak grew each QEMU's RSS
#: without bound until 1 GiB; a cap keeps RSS bounded at the cost of a cheap flush.
TCG_TB_SIZE_MIB = 128


@dataclass(frozen=True)
class QemuConfig:
    """What to boot and how. Paths must exist; everything else has a tiny-guest default."""

    kernel: Path
    initrd: Path | None = None
    append: str | None = None
    accel: str = "tcg"
    memory_mib: int = 64
    cpus: int = 1
    binary: str = "qemu-system-x86_64"
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    #: A gdbstub on a unix socket in the run dir (petri_nb.debug: breakpoints, stepping);
    #: idle until a debugger connects, so it costs nothing by default.
    gdb: bool = True

    def __post_init__(self) -> None:
        """Reject mistyped options here, by name, instead of as a TypeError deep inside launch."""
        for name in ("memory_mib", "cpus"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise LaunchError(f"{name} must be an integer, not {value!r}")
        texts = [("accel", self.accel), ("binary", self.binary)]
        texts += [("append", self.append)] if self.append is not None else []
        texts += [("extra_args", a) for a in self.extra_args]
        for name, value in texts:
            if not isinstance(value, str) or "\0" in value:
                raise LaunchError(f"{name} must be text without NUL characters, not {value!r}")


def kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def resolve_accel(accel: str) -> str:
    """Map the user's accel choice to the one QEMU will use, or say why it can't be had."""
    if accel not in ACCELS:
        raise LaunchError(f"unknown accel {accel!r}; choose one of {', '.join(ACCELS)}")
    if accel == "auto":
        return "kvm" if kvm_usable() else "tcg"
    if accel == "kvm" and not kvm_usable():
        raise LaunchError("accel='kvm' needs read-write access to /dev/kvm, which this user lacks")
    return accel


def find_binary(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise LaunchError(
            f"{binary} not found on PATH; install it with: sudo apt-get install qemu-system-x86"
        )
    return path


def build_command(config: QemuConfig, rundir: Path, accel: str) -> list[str]:
    """The full argv. QEMU starts paused (-S) and connects to our QMP and console sockets.

    Every halt leaves the process alive and paused (reboot and shutdown both pause),
    as a halted petri VM stays halted until reset: the state can still be inspected.
    """
    if not config.kernel.is_file():
        raise LaunchError(f"kernel image {config.kernel} does not exist")
    if config.memory_mib < 16:
        raise LaunchError(f"memory_mib={config.memory_mib} is too small; use at least 16")
    if config.cpus < 1:
        raise LaunchError(f"cpus={config.cpus} must be at least 1")
    argv = [
        find_binary(config.binary),
        "-machine", "q35",
        "-accel", f"tcg,tb-size={TCG_TB_SIZE_MIB}" if accel == "tcg" else accel,
        "-nodefaults", "-no-user-config",
        "-display", "none",
        "-S",
        "-m", str(config.memory_mib),
        "-smp", str(config.cpus),
        "-qmp", f"unix:{rundir / 'qmp.sock'}",
        *display_args(rundir),  # the live view's VNC and control sockets (petri_nb.server)
        "-chardev", f"socket,id=console,path={rundir / 'console.sock'},logfile={rundir / 'console.log'}",
        "-serial", "chardev:console",
        "-device", "VGA",
        "-device", "virtio-tablet-pci",  # absolute pointer for the live view (boots no slower)
        "-device", "pvpanic",
        "-action", "reboot=shutdown,shutdown=pause",
        "-kernel", str(config.kernel),
    ]
    if config.initrd is not None:
        argv += ["-initrd", str(config.initrd)]
    if config.append:
        argv += ["-append", config.append]
    # Evidence to tell a triple fault from a reset: TCG logs "Triple fault" under
    # -d cpu_reset; KVM reports a shutdown exit (reason 8) in the kvm_run_exit trace.
    argv += ["-D", str(rundir / "cpu.log")]
    argv += ["-d", "cpu_reset"] if accel == "tcg" else ["-trace", "kvm_run_exit"]
    if config.gdb:
        argv += ["-gdb", f"unix:{rundir / 'gdb.sock'},server=on,wait=off"]
    # "{rundir}" in extra args names the VM's private run dir (e.g. a guest's agent socket).
    argv += [arg.replace("{rundir}", str(rundir)) for arg in config.extra_args]
    return argv
