"""Guest: the one way to describe a VM to launch, shaped after petri's ``PetriVmBuilder``.

A frozen dataclass: what to boot (a kernel, disks, a CD-ROM), with which firmware,
how big, which devices, how to tell it is ready, and what petri_nb knows about it
(symbols, a liveness probe, the console commands that make it halt). The presets
(``tmk``, ``linux``) are values of this same class; a backend turns one into a
machine. Nothing here starts anything: values are checked when made, files when
launched (they may be built between the two).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Union

from ..errors import LaunchError

#: "bios" is SeaBIOS; "qboot" is a minimal BIOS for direct kernel boot (kernel=... only).
FIRMWARES = ("bios", "qboot", "uefi", "uefi-secure")
#: Guest and VM names end up in run-dir names, timelines and file names: short and path-safe.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
AGENTS = ("qga", "petri")
#: ``ready`` values that are not console regexes.
READY_MODES = ("agent", "boot")
#: extra_args options that take QEMU out of our supervision (it forks away, changes user or root,
#: or reads options we never see): a torn-down VM would leave its QEMU running.
UNSUPERVISED_OPTIONS = ("-daemonize", "-runas", "-chroot", "-readconfig")
#: extra_args options whose value may open a listener or connection; nothing of petri_nb's is on TCP.
ENDPOINT_OPTIONS = ("-qmp", "-qmp-pretty", "-monitor", "-mon", "-chardev", "-serial", "-parallel", "-gdb",
                    "-incoming", "-debugcon", "-vnc", "-spice", "-netdev", "-nic", "-net", "-set")
_NETWORK = re.compile(r"(^|[,:=])(tcp|telnet|tn3270|websocket|udp|vsock|inet)\b|\b(host|port|tls-port|listen|"
                      r"connect|hostfwd|guestfwd|mcast|to|ipv4|ipv6)=|^[^:/,=]*:\d", re.IGNORECASE)

PathLike = Union[str, "os.PathLike[str]"]
#: Reads a number from the guest that must grow by one each call (``verify_save_restore``);
#: gets the VM's AsyncConsole.
LivenessProbe = Callable[[Any], Awaitable[int]]


@dataclass(frozen=True)
class Disk:
    """A disk image. Its format is read from the image with ``qemu-img info``, never guessed.

    Unless ``writable``, the VM writes to a qcow2 overlay in its private run directory and
    the image itself stays byte-identical."""

    path: Path
    writable: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _path("disk path", self.path))
        if not isinstance(self.writable, bool):
            raise LaunchError(f"Disk writable must be True or False, not {self.writable!r}")


@dataclass(frozen=True)
class Nic:
    """A NIC on QEMU's user-mode network (the guest reaches out through NAT).

    Nothing listens on the host unless ``forward`` asks: ``{host_port: guest_port}``
    TCP forwards, bound to 127.0.0.1 only."""

    forward: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        forward = dict(self.forward)
        for host, guest in forward.items():
            for what, port in (("host", host), ("guest", guest)):
                if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                    raise LaunchError(f"Nic forward {what} port must be an int in [1, 65535], not {port!r}")
        object.__setattr__(self, "forward", MappingProxyType(forward))


@dataclass(frozen=True)
class Guest:
    """What to boot and how; ``petri_nb.launch(Guest(...))`` or ``petri_nb.launch(kernel=...)``.

    At least one of ``kernel`` (direct boot, with optional ``initrd`` and ``append``),
    ``disks`` or ``cdrom`` is needed. ``ready`` says when launch returns: a console regex,
    ``"agent"`` (the guest agent answers), ``"boot"`` (the firmware handed over to a
    loader) or None (as soon as the VM runs)."""

    name: str = "guest"
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None
    disks: tuple[Disk, ...] = ()
    cdrom: Path | None = None
    firmware: str = "bios"
    #: A saved UEFI variable store to start from (default: the firmware's empty one).
    firmware_vars: Path | None = None
    memory_mib: int = 512
    cpus: int = 1
    #: Processor topology; when given, sockets * cores * threads must equal ``cpus``.
    sockets: int | None = None
    cores: int | None = None
    threads: int | None = None
    nics: tuple[Nic, ...] = ()
    tpm: bool = False
    agent: str | None = None
    ready: str | None = None
    ready_timeout: float = 120.0
    #: Empty PCIe root ports for hot-plug (add_pcie_device).
    pcie_root_ports: int = 0
    #: A gdbstub for breakpoints and stepping (idle until used).
    gdb: bool = True
    #: Record the run for deterministic replay and reverse debugging (``vm.replay()``).
    record: bool = False
    #: Extra arguments for the backend (QEMU's command line): the escape hatch.
    extra_args: tuple[str, ...] = ()
    #: An ELF file with the guest kernel's symbols (default: ``kernel`` when it is an ELF).
    symbols: Path | None = None
    liveness_probe: LivenessProbe | None = field(default=None, compare=False)
    #: Console commands that make the guest halt, by HaltReason name (fleet experiments).
    halt_commands: Mapping[str, str] = field(default_factory=dict)
    backend: str = "qemu"
    binary: str = "qemu-system-x86_64"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not SAFE_NAME.fullmatch(self.name):
            raise LaunchError(f"guest name must be 1-64 letters, digits, '.', '_' or '-', not {self.name!r:.80}")
        for name in ("kernel", "initrd", "cdrom", "firmware_vars", "symbols"):
            if getattr(self, name) is not None:
                set_(self, name, _path(name, getattr(self, name)))
        set_(self, "disks", tuple(d if isinstance(d, Disk) else Disk(d) for d in _sequence("disks", self.disks)))
        set_(self, "nics", tuple(n if isinstance(n, Nic) else _nic(n) for n in _sequence("nics", self.nics)))
        set_(self, "extra_args", tuple(_sequence("extra_args", self.extra_args)))
        set_(self, "halt_commands", MappingProxyType(dict(self.halt_commands)))
        self._check()

    def _check(self) -> None:
        if self.kernel is None and not self.disks and self.cdrom is None:
            raise LaunchError("a guest needs something to boot: kernel=..., disks=[...] or cdrom=...")
        if self.kernel is None and (self.initrd is not None or self.append is not None):
            raise LaunchError("initrd and append need a kernel to direct-boot (kernel=...)")
        if self.firmware not in FIRMWARES:
            raise LaunchError(f"unknown firmware {self.firmware!r}; choose one of {', '.join(FIRMWARES)}")
        if self.firmware == "qboot" and self.kernel is None:
            raise LaunchError("firmware='qboot' boots only a direct kernel (kernel=...), not a disk or CD-ROM; "
                              "use firmware='bios' or 'uefi' to boot from one")
        if self.firmware == "qboot" and self.ready == "boot":
            raise LaunchError("ready='boot' waits for the firmware's boot events, and qboot reports none; "
                              "use a console regex or firmware='bios'")
        if self.firmware_vars is not None and self.firmware in ("bios", "qboot"):
            raise LaunchError("firmware_vars is a UEFI variable store; it needs firmware='uefi' or 'uefi-secure'")
        writable = [d.path.resolve() for d in self.disks if d.writable]
        for path in dict.fromkeys(writable):
            if sum(d.path.resolve() == path for d in self.disks) > 1:
                raise LaunchError(f"disk image {path} is given twice and writable: one VM cannot write an image "
                                  "through two disks (give it once, or a copy)")
        if not isinstance(self.record, bool):
            raise LaunchError(f"record must be True or False, not {self.record!r}")
        _int_at_least("memory_mib", self.memory_mib, 16)
        _int_at_least("cpus", self.cpus, 1)
        _int_at_least("pcie_root_ports", self.pcie_root_ports, 0)
        topology = [t for t in (self.sockets, self.cores, self.threads) if t is not None]
        for name in ("sockets", "cores", "threads"):
            if getattr(self, name) is not None:
                _int_at_least(name, getattr(self, name), 1)
        if len(topology) == 3 and math.prod(topology) != self.cpus:
            raise LaunchError(f"sockets*cores*threads = {math.prod(topology)} must equal cpus={self.cpus}")
        if self.agent not in (None, *AGENTS):
            raise LaunchError(f"unknown agent {self.agent!r}; choose one of {', '.join(AGENTS)} or None")
        if self.ready == "agent" and self.agent is None:
            raise LaunchError("ready='agent' needs a guest agent (agent='qga')")
        if self.ready is not None and not isinstance(self.ready, str):
            raise LaunchError(f"ready must be a regex, 'agent', 'boot' or None, not {self.ready!r}")
        timeout = self.ready_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
            raise LaunchError(f"ready_timeout must be a positive, finite number of seconds, not {timeout!r}")
        if self.append is not None and (not isinstance(self.append, str) or "\n" in self.append):
            raise LaunchError(f"append must be a one-line string, not {self.append!r}")
        for name, value in [("binary", self.binary), ("backend", self.backend),
                            *(("extra_args", a) for a in self.extra_args),
                            *(("append", a) for a in [self.append] if a is not None)]:
            if not isinstance(value, str) or "\0" in value:
                raise LaunchError(f"{name} must be text without NUL characters, not {value!r}")
        _check_supervised(self.extra_args)
        for reason, command in self.halt_commands.items():
            if not isinstance(reason, str) or not isinstance(command, str):
                raise LaunchError(f"halt_commands maps reason names to console commands, not {reason!r}: {command!r}")

    def replace(self, **changes: Any) -> Guest:
        """A copy with ``changes`` (e.g. ``tmk.replace(memory_mib=64)``); unknown fields are a LaunchError."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise LaunchError(f"bad launch option{'s' * (len(unknown) > 1)} {', '.join(unknown)} "
                              f"for guest {self.name!r}: a Guest has no such field")
        return dataclasses.replace(self, **changes)

    @property
    def symbol_file(self) -> Path | None:
        """Where the guest kernel's symbols are, if anywhere."""
        return self.symbols or self.kernel


def _check_supervised(args: tuple[str, ...]) -> None:
    """Refuse extra_args that would let QEMU outlive teardown or listen on the network."""
    for i, arg in enumerate(args):
        option = arg[1:] if arg.startswith("--") else arg  # QEMU takes --opt as -opt
        if option in UNSUPERVISED_OPTIONS:
            raise LaunchError(f"extra_args option {arg} is refused: it takes QEMU out of petri_nb's supervision "
                              "(the VM's QEMU would outlive teardown)")
        value = args[i + 1] if i + 1 < len(args) else ""
        if option in ENDPOINT_OPTIONS and _NETWORK.search(value):
            raise LaunchError(f"extra_args option {arg} {value!r} is refused: it would open a network endpoint "
                              "(petri_nb keeps every QEMU socket in the VM's private run directory)")


def _path(what: str, value: object) -> Path:
    """A path made absolute here, at the boundary, against the caller's cwd: QEMU runs in the run dir."""
    if isinstance(value, Path):
        return value.expanduser().absolute()
    if isinstance(value, str) and value and "\0" not in value:
        return Path(value).expanduser().absolute()
    if isinstance(value, os.PathLike):
        return Path(value).expanduser().absolute()
    raise LaunchError(f"{what} must be a path, not {value!r}")


def _sequence(what: str, value: object) -> list[Any]:
    if isinstance(value, (str, bytes, os.PathLike)) or not hasattr(value, "__iter__"):
        # One path where a list was expected is a common slip: take it as a list of one.
        if what == "disks" and isinstance(value, (str, os.PathLike)):
            return [value]
        raise LaunchError(f"{what} must be a list, not {value!r}")
    return list(value)  # type: ignore[call-overload]


def _nic(value: object) -> Nic:
    if value == "user":
        return Nic()
    raise LaunchError(f"nics entries must be petri_nb.Nic(...) or 'user', not {value!r}")


def _int_at_least(name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise LaunchError(f"{name} must be an integer >= {low}, not {value!r}")
