"""tmk, the tiny test kernel: a few-KB multiboot kernel that halts on command.

The built ``tmk.elf`` ships in the package so users need no toolchain;
``build()`` rebuilds it from ``tmk.S`` with the machine's gcc and ld.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from ...backends.qemu import QemuConfig
from .. import Guest

HERE = Path(__file__).parent
KERNEL = HERE / "tmk.elf"
READY = r"tmk: ready\r?\n"


def build(out: Path = KERNEL) -> Path:
    """Assemble and link tmk.S into ``out`` (deterministic: no build id, no .comment)."""
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / "tmk.o"
        subprocess.run(["gcc", "-m32", "-nostdinc", "-c", str(HERE / "tmk.S"), "-o", str(obj)], check=True)
        subprocess.run(
            ["ld", "-m", "elf_i386", "--build-id=none", "--no-warn-rwx-segments",
             "-T", str(HERE / "link.ld"), "-o", str(out), str(obj)],
            check=True,
        )
    return out


def tmk_config(
    accel: str = "tcg",
    memory_mib: int = 32,
    cpus: int = 1,
    extra_args: tuple[str, ...] = (),
    kernel: Path = KERNEL,
    binary: str = "qemu-system-x86_64",
    gdb: bool = True,
) -> QemuConfig:
    return QemuConfig(kernel=Path(kernel), accel=accel, memory_mib=memory_mib, cpus=cpus,
                      extra_args=tuple(extra_args), binary=binary, gdb=gdb)


TMK = Guest("tmk", tmk_config, ready=READY, ready_timeout=30.0)

