"""The QEMU command line for one VM, built from its Guest description (pure: easy to test and to print)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ...errors import LaunchError, PetriError
from ...guests.description import Guest
from . import agent_port
from .disks import PreparedDisk, check_readable
from .display import display_args
from .firmware import machine_options

ACCELS = ("tcg", "kvm", "auto")
#: Sockets QEMU itself listens on in the run dir (besides the view's, backends.view.VIEW_SOCKETS).
GDB_SOCKET = "gdb.sock"
#: The chardev holding the firmware's debug-port log: a ring in QEMU's memory, read over QMP
#: (``ringbuf-read``), because a socket costs a syscall per byte SeaBIOS writes.
DEBUG_PORT_RING = "fwdebug"
DEBUG_PORT_RING_SIZE = 65536
#: TCG's translated-code buffer. QEMU's default is 1 GiB, and every reset adds new
#: code (~1.5 MiB for tmk's firmware reboot), so a reset soak grew each QEMU's RSS
#: without bound until 1 GiB; a cap keeps RSS bounded at the cost of a cheap flush.
TCG_TB_SIZE_MIB = 128


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


def build_command(guest: Guest, rundir: Path, accel: str, disks: Sequence[PreparedDisk] = (),
                  device_args: Sequence[str] = ()) -> list[str]:
    """The full argv. QEMU starts paused (-S) and connects to our QMP and console sockets.

    Every halt leaves the process alive and paused (reboot and shutdown both pause),
    as a halted petri VM stays halted until reset: the state can still be inspected.
    ``disks`` are the prepared images (overlays); ``device_args`` come from the run
    dir's helpers (firmware flash, TPM).
    """
    check_readable("kernel image", guest.kernel)
    check_readable("initrd", guest.initrd)
    check_readable("CD-ROM image", guest.cdrom)
    smp = [str(guest.cpus)] + [f"{n}={v}" for n, v in (("sockets", guest.sockets), ("cores", guest.cores),
                                                        ("threads", guest.threads)) if v is not None]
    argv = [
        find_binary(guest.binary),
        "-machine", "q35" + machine_options(guest.firmware),
        "-accel", f"tcg,tb-size={TCG_TB_SIZE_MIB}" if accel == "tcg" else accel,
        "-nodefaults", "-no-user-config",
        "-display", "none",
        "-S",
        "-m", str(guest.memory_mib),
        "-smp", ",".join(smp),
        "-qmp", f"unix:{rundir / 'qmp.sock'}",
        *display_args(rundir),  # the live view's VNC and control sockets (petri_nb.server)
        "-chardev", f"socket,id=console,path={rundir / 'console.sock'},logfile={rundir / 'console.log'}",
        "-serial", "chardev:console",
        "-device", "VGA",
        "-device", "virtio-tablet-pci",  # absolute pointer for the live view (boots no slower)
        "-device", "pvpanic",
        # The firmware's debug port (SeaBIOS logs its boot attempts there): boot events.
        "-chardev", f"ringbuf,id={DEBUG_PORT_RING},size={DEBUG_PORT_RING_SIZE}",
        "-device", f"isa-debugcon,iobase=0x402,chardev={DEBUG_PORT_RING}",
        "-action", "reboot=shutdown,shutdown=pause",
        *device_args,
    ]
    if guest.kernel is not None:
        argv += ["-kernel", qemu_path("kernel", guest.kernel)]
        if guest.initrd is not None:
            # A multiboot kernel's -initrd is a module list: QEMU splits it at commas and each
            # entry at its first space (a Linux kernel's is taken whole, so ",," is no escape).
            argv += ["-initrd", qemu_path("initrd", guest.initrd, separators=", " if
                                          not _is_linux_kernel(guest.kernel) else ",")]
        if guest.append:
            argv += ["-append", guest.append]
    for i, disk in enumerate(disks):
        argv += ["-blockdev", _blockdev(f"disk{i}", disk.path, disk.format),
                 "-device", f"virtio-blk-pci,drive=disk{i},bootindex={i + 1}"]
    if guest.cdrom is not None:
        argv += ["-blockdev", _blockdev("cdrom", guest.cdrom.resolve(), "raw", read_only=True),
                 "-device", f"ide-cd,drive=cdrom,bus=ide.1,bootindex={len(disks) + 1}"]
    for i, nic in enumerate(guest.nics):
        forwards = "".join(f",hostfwd=tcp:127.0.0.1:{host}-:{port}" for host, port in nic.forward.items())
        argv += ["-netdev", f"user,id=net{i}{forwards}", "-device", f"virtio-net-pci,netdev=net{i}"]
    for i in range(1, guest.pcie_root_ports + 1):
        argv += ["-device", f"pcie-root-port,id=rp{i},bus=pcie.0,chassis={i},slot={i}"]
    if guest.agent is not None:
        argv += agent_port.chardev_args(guest.agent, rundir)
    # Evidence to tell a triple fault from a reset: TCG logs "Triple fault" under
    # -d cpu_reset; KVM reports a shutdown exit (reason 8) in the kvm_run_exit trace.
    argv += ["-D", str(rundir / "cpu.log")]
    argv += ["-d", "cpu_reset"] if accel == "tcg" else ["-trace", "kvm_run_exit"]
    if guest.gdb:
        argv += ["-gdb", f"unix:{rundir / GDB_SOCKET},server=on,wait=off"]
    # "{rundir}" in extra args names the VM's private run dir.
    argv += [arg.replace("{rundir}", str(rundir)) for arg in guest.extra_args]
    return argv


def qemu_path(what: str, path: Path | str, *, option: bool = False, separators: str = "") -> str:
    """The one way a file's path goes into QEMU's command line, absolute (QEMU runs in the run dir).

    ``option``: the value sits in a comma-separated option list (``file=...``), where QEMU reads
    ``,,`` as a comma. ``separators``: characters QEMU splits this value at with no escape, so
    a path holding one would make QEMU open another file: refused, naming the field."""
    text = os.path.abspath(path)
    for sep in separators:
        if sep in text:
            raise LaunchError(f"{what} path {text!r} contains {sep!r}, which QEMU reads as a separator there "
                              "(it would open another file); rename the file or link it from a plain path")
    return text.replace(",", ",,") if option else text


def _is_linux_kernel(kernel: Path) -> bool:
    """Whether QEMU boots ``kernel`` as Linux (the "HdrS" boot-protocol magic) rather than multiboot."""
    try:
        with open(kernel, "rb") as f:
            f.seek(0x202)
            return f.read(4) == b"HdrS"
    except OSError:
        return False


def _blockdev(node: str, path: Path, fmt: str, read_only: bool = False) -> str:
    """A -blockdev for ``path``."""
    ro = ",read-only=on" if read_only else ""
    return f"driver={fmt},node-name={node}{ro},file.driver=file,file.filename={qemu_path(node, path, option=True)}"


def with_command_line(argv: list[str], command_line: str) -> list[str]:
    """``argv`` with ``command_line`` as the direct-boot kernel's command line (``-append``).

    QEMU reads ``-append`` only at start-up (it lives in fw_cfg), so the runtime starts a
    fresh QEMU from the new argv at the next reset, as petri's update_command_line applies
    "at the next restart"."""
    if not isinstance(command_line, str) or "\n" in command_line or "\0" in command_line:
        raise PetriError(f"the kernel command line must be a one-line string, not {command_line!r}")
    argv = list(argv)
    if "-append" in argv:
        argv[argv.index("-append") + 1] = command_line
    elif "-kernel" in argv:
        argv[argv.index("-kernel") + 2:argv.index("-kernel") + 2] = ["-append", command_line]
    else:
        raise PetriError("update_command_line() needs a direct-boot (-kernel) guest")
    return argv
