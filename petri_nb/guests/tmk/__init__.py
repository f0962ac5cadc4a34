"""tmk, the tiny test kernel: a few-KB multiboot kernel that halts on command.

The built ``tmk.elf`` ships in the package so users need no toolchain;
``build()`` rebuilds it from ``tmk.S`` with the machine's gcc and ld.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ..description import Guest

HERE = Path(__file__).parent
KERNEL = HERE / "tmk.elf"
READY = r"tmk: ready\r?\n"
_COUNT = re.compile(r"count=(\d+)\r?\n")


def build(out: Path = KERNEL) -> Path:
    """Assemble and link tmk.S into ``out`` (deterministic: no build id, no .comment)."""
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / "tmk.o"
        # -Wa,-I: the assembler finds the font (.incbin) next to tmk.S from any working directory.
        subprocess.run(["gcc", "-m32", "-nostdinc", f"-Wa,-I{HERE}", "-c", str(HERE / "tmk.S"), "-o", str(obj)],
                       check=True)
        subprocess.run(
            ["ld", "-m", "elf_i386", "--build-id=none", "--no-warn-rwx-segments",
             "-T", str(HERE / "link.ld"), "-o", str(out), str(obj)],
            check=True,
        )
    return out


async def _counter(console: Any) -> int:
    """tmk's ``count`` command: a number that survives save/restore and grows by one per call."""
    await console.write("count\n")
    return int((await console.expect(_COUNT, timeout=10))[1])


#: tmk as a Guest: direct boot of the multiboot ELF, which is also its symbol file. qboot by
#: default: tmk needs no firmware services, and a reset to the banner takes ~10 ms instead of
#: SeaBIOS's ~120 ms (bench/RESULTS.md); ``tmk(firmware="bios")`` still boots it under SeaBIOS.
TMK = Guest(
    name="tmk", kernel=KERNEL, firmware="qboot", memory_mib=32, ready=READY, ready_timeout=30.0,
    liveness_probe=_counter,
    halt_commands={"POWER_OFF": "poweroff", "RESET": "reset", "TRIPLE_FAULT": "triplefault", "PANIC": "panic",
                   "HIBERNATE": "hibernate"},
)


def tmk(**options: Any) -> Guest:
    """The tmk preset; ``options`` replace Guest fields (e.g. ``memory_mib=64``, ``extra_args=(...)``)."""
    return TMK.replace(**options) if options else TMK
