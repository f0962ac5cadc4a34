"""petri's on-disk result format: the names, the folder rule, and reading levels and halts out of its text.

Learned from openvmm's source (petri/src/tracing.rs, the vmm_tests log directory rule,
logview's log parsing and flowey's failure summary), so that a notebook sees a test
the way petri's own tools do. Pure functions over strings: the reader and the
exporter share them, and they are cheap enough to call once per log line.
"""

from __future__ import annotations

import re

LOG = "petri.jsonl"
TEST = "petri.test"
PASSED = "petri.passed"
FAILED = "petri.failed"
FAILED_UNSTABLE = "petri.failed_unstable"
MARKERS = (PASSED, FAILED, FAILED_UNSTABLE)
#: Files whose presence makes a folder a petri test folder.
TEST_FILES = (LOG, TEST, *MARKERS)
#: CI uploads each job's test folders as an artifact named ``<job>-vmm-tests-logs``.
JOB_SUFFIX = "-vmm-tests-logs"
#: A CI run folder: ``<run_id>_<attempt>``.
RUN_FOLDER = re.compile(r"^(\d+)_(\d+)$")
OUTCOMES = ("passed", "failed", "failed_unstable", "incomplete")
LEVELS = ("ERROR", "WARN", "INFO", "DEBUG", "TRACE")

#: petri's log sources by what produced them (a log file is named by its source).
SOURCE_KINDS = {
    "petri": "petri", "openvmm": "vmm", "hyperv": "vmm", "qemu": "vmm", "openhcl": "paravisor",
    "linux": "guest", "uefi": "guest", "pcat": "guest", "guest": "guest", "attachment": "attachment",
    # our own exports' sources
    "qmp": "vmm", "console": "guest", "runtime": "petri", "halt": "petri", "agent": "guest", "boot": "guest",
    "inspect": "vmm", "screen": "attachment",
}

_UPTIME = re.compile(r"^\s*\d+\.\d+s\s+")
_ISO = re.compile(r"^\s*\[?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?\]?\s+")
_LEVEL = re.compile(r"^(ERROR|WARN|INFO|DEBUG|TRACE)\b\s*")
_SYSLOG = re.compile(r"^<(\d{1,3})>\s*(?=\[)")
_KMSG = re.compile(r"^\[\s*(\d+)\.(\d{6})\]\s?")
_HALT_DETAIL = re.compile(r"got PetriHaltReasonDetail \{ reason: (\w+), detail: \"((?:[^\"\\]|\\.)*)\"", re.S)
_EXPECTED = re.compile(r"Expected (\w+), got")
_GOT_HALT = re.compile(r"Got halt reason\s+halt_reason=(\w+)(.*)$", re.S)
#: petri's and openvmm's halt names as our HaltReason names.
HALTS = {"PowerOff": "POWER_OFF", "Reset": "RESET", "Hibernate": "HIBERNATE", "TripleFault": "TRIPLE_FAULT",
         "Other": "OTHER"}


def test_folder(test: str) -> str:
    """The folder petri writes a test into: its name with ``::`` made ``__`` (not every file system takes ``:``)."""
    return test.replace("::", "__")


def test_from_folder(folder: str) -> str:
    """A test's name when petri.test is missing: flowey's undoing of the folder rule."""
    return folder.replace("__", "::")


def source_kind(source: str) -> str:
    """host VMM (``vmm``), ``paravisor``, firmware/guest serial (``guest``), ``petri``, ``attachment`` or ``other``."""
    kind = SOURCE_KINDS.get(source)
    if kind:
        return kind
    return "vmm" if source.startswith(("openvmm", "hyperv")) else "other"


def kernel_level(n: int) -> str:
    """A syslog priority as petri maps it (tracing.rs kernel_level_to_tracing_level)."""
    level = n & 7
    return "ERROR" if level <= 3 else "WARN" if level == 4 else "DEBUG" if level == 7 else "INFO"


def parse_line(severity: str, message: str) -> tuple[str, str, float | None]:
    """A log line's level, its text as logview shows it, and a kernel time if it is a kmsg line.

    petri's JSON severity is the level of the writer, not the line: openvmm's stderr comes
    in as INFO with its own level in the text (``0.004211000s  WARN ...``), and petri's
    tracing lines repeat their timestamp and level. Like logview, a leading uptime or
    timestamp and then a level word are taken off. A raw syslog line (``<4>[  1.5] ...``)
    gets its level from the priority; a kmsg line keeps ``[secs.usecs]`` and gives its time.
    """
    level = severity if severity in LEVELS else "INFO"
    text = message.strip()
    prefix = _UPTIME.match(text) or _ISO.match(text)
    stripped = text[prefix.end():] if prefix else text
    found = _LEVEL.match(stripped)
    if found:
        return found.group(1), stripped[found.end():], None
    syslog = _SYSLOG.match(text)
    if syslog:
        level, text = kernel_level(int(syslog.group(1))), text[syslog.end():]
    kmsg = _KMSG.match(text)
    return level, text, (int(kmsg.group(1)) + int(kmsg.group(2)) / 1e6) if kmsg else None


def halt_from_failure(error: str) -> tuple[str, str, str | None] | None:
    """(our HaltReason name, detail, what was expected) from a failure such as
    ``Expected PowerOff, got PetriHaltReasonDetail { reason: TripleFault, detail: "..." }``; None if none."""
    found = _HALT_DETAIL.search(error)
    if not found:
        return None
    expected = _EXPECTED.search(error)
    detail = found.group(2).replace('\\"', '"').replace("\\\\", "\\")
    return HALTS.get(found.group(1), "OTHER"), detail, expected.group(1) if expected else None


def halt_from_line(text: str) -> tuple[str, str] | None:
    """(our HaltReason name, detail) from petri's ``Got halt reason halt_reason=...`` trace line; None if not one."""
    found = _GOT_HALT.search(text)
    if not found:
        return None
    return HALTS.get(found.group(1), "OTHER"), (found.group(1) + found.group(2)).strip()


def attachment_source(name: str) -> tuple[str, str]:
    """The timeline (source, kind) of an attachment: PNGs are screens, inspect dumps inspect, the rest files.

    As logview decides: a name with ``inspect`` in it is an inspect dump even if it is a PNG."""
    if "inspect" in name:
        return "inspect", "dump"
    if name.lower().endswith(".png"):
        return "screen", "screenshot"
    return "runtime", "file"
