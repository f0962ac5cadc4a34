"""The initramfs inside the test disks: busybox, virtio/TPM modules and Debian's real qemu-ga.

Users' images run ``qemu-guest-agent``, not our agent, so the fixtures run the real
Debian binary: it comes from its .deb and its shared libraries (found by walking the
ELF ``DT_NEEDED`` entries) from the host, which is the same Debian 12. There is no
udev in the guest, so the init script finds the ``/dev/vportNpM`` whose sysfs name is
``org.qemu.guest_agent.0`` itself.
"""

from __future__ import annotations

from pathlib import Path

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from ...errors import LaunchError
from ..linux import _module_order, fetch_busybox, fetch_kernel
from ..linux import cache_dir as linux_cache_dir
from ..linux.initramfs import Cpio
from .common import build_atomically, cache_lock, is_fresh, package_file, sources

READY_LINE = "petri-images: ready"
#: Regex for the ready line on the serial console.
READY = r"petri-images: ready\r?\n"
COMMAND_LINE = "console=ttyS0 quiet panic=-1"
QGA_PORT = "org.qemu.guest_agent.0"
QGA_PACKAGE = "qemu-guest-agent"
#: tpm_tis/tpm_crb are built into Debian's kernel (then nothing is loaded); kept for other kernels.
MODULES = ("virtio_pci", "virtio_console", "virtio_blk", "tpm_tis", "tpm_crb")
LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64")

INIT = f"""#!/bin/busybox sh
export PATH=/bin:/sbin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
for m in $(cat /etc/modules); do insmod "$m" 2>/dev/null; done
port=""
# The port's name arrives from the host shortly after the driver binds; give it 5 s.
for i in $(seq 50); do
    for n in /sys/class/virtio-ports/*/name; do
        [ -f "$n" ] && [ "$(cat "$n")" = "{QGA_PORT}" ] && port=/dev/$(basename "$(dirname "$n")")
    done
    [ -n "$port" ] && [ -e "$port" ] && break
    [ -d /sys/class/virtio-ports ] || [ "$i" -lt 10 ] || break
    sleep 0.1
done
if [ -n "$port" ]; then
    /usr/sbin/qemu-ga -m virtio-serial -p "$port" -f /run/qemu-ga.pid -t /run </dev/null >/dev/null 2>&1 &
fi
echo "{READY_LINE}"
while true; do setsid cttyhack sh; done
"""

# qemu-ga's guest-shutdown runs /sbin/shutdown -P|-H|-r +0 MESSAGE; busybox has no shutdown.
SHUTDOWN = """#!/bin/sh
sync
case "$1" in
    -r) exec reboot -f ;;
    -H) exec halt -f ;;
    *) exec poweroff -f ;;
esac
"""


def _elf_deps(path: Path) -> tuple[list[str], str | None]:
    """(DT_NEEDED sonames, PT_INTERP) of an ELF file."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        needed = [tag.needed for s in elf.iter_sections() if isinstance(s, DynamicSection)
                  for tag in s.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]
        interp = next((seg.get_interp_name() for seg in elf.iter_segments()
                       if seg.header.p_type == "PT_INTERP"), None)
    return needed, interp


def library_closure(binary: Path, dirs: tuple[str, ...] = LIB_DIRS) -> dict[str, Path]:
    """Guest path -> host file for the interpreter and every library ``binary`` needs."""
    found: dict[str, Path] = {}
    todo = [binary]
    while todo:
        needed, interp = _elf_deps(todo.pop())
        if interp and interp not in found:
            found[interp] = Path(interp).resolve()
        for soname in needed:
            guest = f"/lib/x86_64-linux-gnu/{soname}"
            if guest in found:
                continue
            host = next((Path(d) / soname for d in dirs if (Path(d) / soname).exists()), None)
            if host is None:
                raise LaunchError(f"{binary.name} needs {soname}, which is not on this host; install "
                                  f"the Debian package that has it (apt-file search {soname})")
            found[guest] = host.resolve()
            todo.append(host.resolve())
    return found


def build_initramfs(cache: Path) -> tuple[Path, Path]:
    """(kernel, initramfs) for the fixture disks, built once into ``cache``."""
    with cache_lock(linux_cache_dir()):  # the Linux guest's lock guards its kernel cache
        kernel, moddir = fetch_kernel(linux_cache_dir())
        busybox = fetch_busybox(linux_cache_dir())
    with cache_lock(cache, "initramfs"):
        out = cache / f"initramfs-qga-{moddir.name}.cpio"
        qga = package_file(QGA_PACKAGE, "/usr/sbin/qemu-ga", cache)
        if is_fresh(out, [busybox, qga, kernel, *sources()]):
            return kernel, out

        def build(tmp: Path) -> None:
            cpio = Cpio()
            for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "run", "var", "root", "usr",
                      "usr/sbin", "lib", "lib/modules", "lib/x86_64-linux-gnu", "lib64"):
                cpio.directory(d)
            cpio.symlink("var/run", "../run")
            cpio.char_device("dev/console", 5, 1)
            cpio.file("init", INIT.encode(), 0o755)
            cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
            cpio.symlink("bin/sh", "busybox")
            cpio.file("sbin/shutdown", SHUTDOWN.encode(), 0o755)
            cpio.file("usr/sbin/qemu-ga", qga.read_bytes(), 0o755)
            for guest, host in sorted(library_closure(qga).items()):
                cpio.file(guest.lstrip("/"), host.read_bytes(), 0o755)
            paths = []
            for module in _module_order(moddir, MODULES):
                cpio.file(f"lib/modules/{module.name}", module.read_bytes(), 0o644)
                paths.append(f"/lib/modules/{module.name}")
            cpio.file("etc/modules", ("\n".join(paths) + "\n").encode(), 0o644)
            tmp.write_bytes(cpio.finish())

        return kernel, build_atomically(out, build)
