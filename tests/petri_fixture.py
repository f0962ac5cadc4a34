"""A petri CI result tree written as petri writes one (openvmm's petri/src/tracing.rs, the vmm_tests folder rule,
flowey's markers), for the reader's tests and the petri_results notebook.

Two CI runs of one job. Run 1001_1: a passing Linux boot (petri tracing lines that
repeat their timestamp and level, openvmm stderr at INFO with WARN in its text,
OpenHCL kmsg lines at their kernel level, a guest serial line, two screenshots and
the PowerOff halt), a triple-faulting UEFI boot (its failure as petri words it, an
inspect dump and a crash dump), an unstable test that failed and one killed before
it reported. Run 1002_1: the same tests, all passing except the killed one.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

from PIL import Image

JOB = "x64-linux"
TRIPLE = ('Expected PowerOff, got PetriHaltReasonDetail { reason: TripleFault, detail: "TripleFault { vp: 0, '
          'registers: None }" }')


def png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


class PetriTestDir:
    """One test's folder: log lines go to petri.jsonl and to ``<source>.log``, as PetriLogFile writes them."""

    def __init__(self, run: Path, test: str, start: str = "2026-03-04T05:06:07") -> None:
        self.dir = run / f"{JOB}-vmm-tests-logs" / test.replace("::", "__")
        self.dir.mkdir(parents=True)
        (self.dir / "petri.test").write_text(test)
        self.start, self.n = start, 0
        self.log = (self.dir / "petri.jsonl").open("a")

    def stamp(self, seconds: float) -> str:
        """As jiff writes a timestamp: nanoseconds, trailing zeros dropped."""
        at = dt.datetime.fromisoformat(self.start) + dt.timedelta(seconds=seconds)
        fraction = f"{at.microsecond * 1000:09d}".rstrip("0")
        return at.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"

    def line(self, seconds: float, source: str, severity: str, message: str) -> None:
        self.log.write(json.dumps({"timestamp": self.stamp(seconds), "source": source, "severity": severity,
                                   "message": message.strip()}, separators=(",", ":")) + "\n")
        with (self.dir / f"{source}.log").open("a") as f:
            f.write(message + "\n")

    def trace(self, seconds: float, level: str, message: str) -> None:
        """A petri tracing line: the compact formatter repeats the time and the level in the text."""
        self.line(seconds, "petri", level, f"{self.stamp(seconds)} {level:>5} {message}")

    def attach(self, seconds: float, name: str, blob: bytes) -> None:
        (self.dir / name).write_bytes(blob)
        self.log.write(json.dumps({"timestamp": self.stamp(seconds), "attachment": name}) + "\n")

    def end(self, marker: str | None, text: str = "") -> None:
        self.log.close()
        if marker:
            (self.dir / marker).write_text(text)


def linux_boot(run: Path, screens: bool = True) -> None:
    t = PetriTestDir(run, "x86_64::openvmm_linux_direct_x64")
    t.trace(0.0, "INFO", "petri::vm: starting vm")
    t.line(0.1, "openvmm", "INFO", "0.004211000s  INFO openvmm: starting")
    t.line(0.2, "openvmm", "INFO", "0.104211000s  WARN vmm_core: unknown MSR 0x1234")
    t.line(0.3, "openhcl", "WARN", "[2.500000] nvme: controller slow to respond")
    t.line(0.35, "openhcl", "ERROR", "[2.600123] mana: link down")
    t.line(0.4, "linux", "INFO", "Linux version 6.6.0 (root@host)")
    if screens:
        t.attach(0.5, "screenshot.png", png((0, 0, 128)))
        t.attach(0.7, "screenshot_1.png", png((0, 128, 0)))
    t.trace(0.9, "INFO", "petri::vm::openvmm::runtime: Got halt reason halt_reason=PowerOff")
    t.trace(0.95, "INFO", "petri: test passed")
    t.end("petri.passed")


def uefi_triple_fault(run: Path) -> None:
    t = PetriTestDir(run, "x86_64::openhcl_uefi_x64_boot")
    t.trace(0.0, "INFO", "petri::vm: starting vm")
    t.line(0.2, "uefi", "INFO", "BdsDxe: loading Boot0001")
    t.attach(0.4, "timeout_inspect_vmm.log", b"vm: {\n  state: running\n}\n")
    t.attach(0.45, "dumpfile.dmp", b"MDMP" + bytes(60))
    t.trace(0.5, "ERROR", f"petri: test failed error={TRIPLE}")
    t.end("petri.failed", TRIPLE)


def flaky(run: Path, fails: bool) -> None:
    t = PetriTestDir(run, "x86_64::openvmm_uefi_x64_flaky")
    t.trace(0.0, "INFO", "petri::vm: starting vm")
    if fails:
        t.trace(0.6, "WARN", "petri: unstable test failed error=Test timed out")
        t.end("petri.failed_unstable", "Test timed out")
    else:
        t.trace(0.3, "INFO", "petri: test passed")
        t.end("petri.passed")


def killed(run: Path) -> None:
    t = PetriTestDir(run, "x86_64::openvmm_pcat_x64_killed")
    t.trace(0.0, "INFO", "petri::vm: starting vm")
    t.line(0.1, "pcat", "INFO", "SeaBIOS (version 1.16)")
    t.end(None)


def ci_tree(root: Path) -> Path:
    """Two CI runs under ``root``; returns root."""
    first, second = root / "1001_1", root / "1002_1"
    linux_boot(first)
    uefi_triple_fault(first)
    flaky(first, fails=True)
    killed(first)
    linux_boot(second, screens=False)
    flaky(second, fails=False)
    killed(second)
    return root
