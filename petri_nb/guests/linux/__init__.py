"""The Linux test guest: Debian's kernel, direct-booted with a busybox initramfs built here.

Nothing is installed on the host: the kernel and busybox-static packages are fetched
with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into a per-user cache
(``~/.cache/petri_nb/linux``), the guest agent (``agent.c``) is compiled there with
``gcc -static``, and the initramfs (an uncompressed cpio, so TCG need not gunzip it)
is written by ``petri_nb.guests.linux.initramfs``. Each artifact is built once and reused.

The kernel command line is fixed for the life of a QEMU process (``-append`` goes
into fw_cfg at launch; a reset re-reads the same value), so ``command_line`` is a
launch option.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ...errors import LaunchError
from ..description import Guest
from .initramfs import Cpio

HERE = Path(__file__).parent
KERNEL_PACKAGE = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
READY = r"petri-linux: ready\r?\n"
DEFAULT_COMMAND_LINE = "console=ttyS0 quiet panic=-1"
#: Hot-plug slots: q35 root ports named rp1..rpN.
ROOT_PORTS = 4
#: Modules the init script loads, in dependency order after resolution.
MODULES = ("virtio_pci", "virtio_console", "virtio_blk", "virtio_net", "button", "evdev")


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "petri_nb" / "linux"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _apt_hint(packages: str) -> str:
    return f"sudo apt-get update && sudo apt-get install --download-only {packages}"


def _download(package: str, dest: Path) -> Path:
    """``apt-get download`` one package into ``dest``; the .deb path."""
    dest.mkdir(parents=True, exist_ok=True)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise LaunchError("the Linux guest needs apt-get and dpkg-deb (a Debian host) to fetch its kernel")
    proc = subprocess.run(["apt-get", "download", package], cwd=dest, capture_output=True, text=True)
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not debs:
        raise LaunchError(
            f"could not fetch the Debian package {package} (apt-get download said: "
            f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}); "
            f"make it available with: {_apt_hint(package)}"
        )
    return debs[-1]


def _kernel_package() -> str:
    """The versioned image package that ``linux-image-amd64`` depends on."""
    proc = subprocess.run(["apt-cache", "depends", KERNEL_PACKAGE], capture_output=True, text=True)
    found = re.findall(r"Depends:\s*(linux-image-\S+-amd64)", proc.stdout)
    if proc.returncode != 0 or not found:
        raise LaunchError(
            f"apt knows no {KERNEL_PACKAGE} package here; run: sudo apt-get update "
            f"(then: apt-get download {KERNEL_PACKAGE} works without installing it)"
        )
    return found[0]


def fetch_kernel(cache: Path | None = None) -> tuple[Path, Path]:
    """(vmlinuz, modules dir) of Debian's current amd64 kernel, unpacked in the cache."""
    cache = cache or cache_dir()
    # Reuse an unpacked kernel without asking apt (1-2 s per launch); delete the cache to refresh.
    cached = sorted(p.parent for p in cache.glob("linux-image-*/.done"))
    package = cached[-1].name if cached else _kernel_package()
    root = cache / package
    if not (root / ".done").exists():
        deb = _download(package, cache / "debs")
        tmp = Path(tempfile.mkdtemp(dir=cache))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
        (root / ".done").touch()
        deb.unlink()
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise LaunchError(f"{package} holds no /boot/vmlinuz-*; remove {root} and retry")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    return kernels[-1], root / "lib" / "modules" / version


def fetch_busybox(cache: Path | None = None) -> Path:
    """A static busybox: the installed busybox-static's, else one unpacked into the cache."""
    cache = cache or cache_dir()
    installed = subprocess.run(["dpkg-query", "-W", "-f=${Status}", BUSYBOX_PACKAGE],
                               capture_output=True, text=True)
    if "install ok installed" in installed.stdout and Path("/bin/busybox").is_file():
        return Path("/bin/busybox")
    root = cache / BUSYBOX_PACKAGE
    if not (root / ".done").exists():
        deb = _download(BUSYBOX_PACKAGE, cache / "debs")
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        (root / ".done").touch()
        deb.unlink()
    return root / "bin" / "busybox"


def build_agent(cache: Path | None = None) -> Path:
    """Compile agent.c statically (glibc static is in Debian's libc6-dev)."""
    cache = cache or cache_dir()
    source = HERE / "agent.c"
    out = cache / "petri-agent"
    if out.exists() and out.stat().st_mtime >= source.stat().st_mtime:
        return out
    if shutil.which("gcc") is None:
        raise LaunchError("building the guest agent needs gcc; run: sudo apt-get install gcc libc6-dev")
    tmp = out.with_suffix(f".{os.getpid()}")
    proc = subprocess.run(["gcc", "-static", "-Os", "-s", "-o", str(tmp), str(source)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise LaunchError(f"could not build the guest agent: {proc.stderr.strip()[-500:]}; "
                          "static glibc comes with: sudo apt-get install libc6-dev")
    tmp.replace(out)
    return out


_DEPENDS = re.compile(rb"(?:^|\x00)depends=([^\x00]*)\x00")


def _module_order(moddir: Path, wanted: tuple[str, ...]) -> list[Path]:
    """Module files for ``wanted`` and their dependencies, dependencies first.

    The unpacked package has no modules.dep (depmod runs at install time), so the
    ``depends=`` field of each module's .modinfo section is read directly.
    """
    files = {p.name.split(".ko")[0].replace("-", "_"): p for p in moddir.rglob("*.ko*")}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        if name not in files:
            return  # built into the kernel
        match = _DEPENDS.search(files[name].read_bytes())
        for dep in (match.group(1).decode().split(",") if match and match.group(1) else []):
            visit(dep)
        order.append(files[name])

    for name in wanted:
        visit(name)
    return order


INIT = """#!/bin/busybox sh
export PATH=/bin:/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
for m in $(cat /etc/modules); do insmod "$m"; done
/sbin/petri-agent </dev/null >/dev/null 2>&1 &
echo "petri-linux: ready"
while true; do setsid cttyhack sh; done
"""


def build_initramfs(cache: Path | None = None) -> tuple[Path, Path]:
    """(kernel, initramfs), building whatever is missing in the cache."""
    cache = cache or cache_dir()
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several test processes may build at once
        kernel, moddir = fetch_kernel(cache)
        busybox = fetch_busybox(cache)
        agent = build_agent(cache)
        out = cache / f"initramfs-{moddir.name}.cpio"
        inputs = [busybox, agent, Path(__file__)]
        if out.exists() and all(out.stat().st_mtime >= p.stat().st_mtime for p in inputs):
            return kernel, out
        cpio = Cpio()
        for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "lib", "lib/modules"):
            cpio.directory(d)
        cpio.char_device("dev/console", 5, 1)
        cpio.file("init", INIT.encode(), 0o755)
        cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
        cpio.symlink("bin/sh", "busybox")
        cpio.file("sbin/petri-agent", agent.read_bytes(), 0o755)
        paths = []
        for module in _module_order(moddir, MODULES):
            cpio.file(f"lib/modules/{module.name}", module.read_bytes(), 0o644)
            paths.append(f"/lib/modules/{module.name}")
        cpio.file("etc/modules", ("\n".join(paths) + "\n").encode(), 0o644)
        tmp = out.with_suffix(f".{os.getpid()}")
        tmp.write_bytes(cpio.finish())
        tmp.replace(out)
        return kernel, out


def linux(command_line: str = DEFAULT_COMMAND_LINE, root_ports: int = ROOT_PORTS, **options: Any) -> Guest:
    """The test Linux guest (built on first use): our agent, ``root_ports`` PCIe hot-plug slots;
    ``options`` replace other Guest fields (``memory_mib``, ``cpus``, ``extra_args``...)."""
    if not isinstance(command_line, str) or "\n" in command_line:
        raise LaunchError(f"command_line must be a one-line string, not {command_line!r}")
    if not isinstance(root_ports, int) or not 0 <= root_ports <= 16:
        raise LaunchError(f"root_ports={root_ports!r} must be an int from 0 to 16")
    kernel, initrd = build_initramfs()
    # SeaBIOS: qboot boots Linux no faster (bench/firmware_linux.py: boot-to-agent 0.85-1.00x), leaves
    # the VGA uninitialised (a black live view) and gives a TPM guest no memory map.
    guest = Guest(name="linux", kernel=kernel, initrd=initrd, append=command_line, memory_mib=128, agent="petri",
                  pcie_root_ports=root_ports, ready=READY, ready_timeout=120.0, firmware="bios")
    return guest.replace(**options) if options else guest
