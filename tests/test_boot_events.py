"""Boot events: the parser on text captured from Debian 12's SeaBIOS and OVMF, then on live firmware."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plain_qemu import PlainQemu

from petri_nb.backends.qemu.boot_events import BootEvent, BootEventParser, parse_boot_events
from petri_nb.guests.images import bios_disk, empty_disk, secure_boot_disk, uefi_disk

DATA = Path(__file__).parent / "data" / "firmware"


def captured(name: str) -> str:
    return (DATA / name).read_text()


def kinds(events: list[BootEvent]) -> list[str]:
    return [e.kind for e in events]


# --- the parser on captured firmware text ---------------------------------------------------------

def test_seabios_booting_a_disk_is_an_attempt_then_a_success() -> None:
    events = parse_boot_events(captured("seabios-bios-disk.firmware.log"))
    assert kinds(events) == ["attempt", "success"]
    assert {e.firmware for e in events} == {"seabios"}
    assert events[0].detail == "Hard Disk"
    assert events[1].line == "Booting from 0000:7c00"


def test_seabios_with_nothing_bootable_tries_each_device_then_reports_no_boot_device() -> None:
    events = parse_boot_events(captured("seabios-empty-disk.firmware.log"))
    assert kinds(events) == ["attempt", "failed"] * 3 + ["no_boot_device"]
    assert [e.detail for e in events if e.kind == "attempt"] == ["Hard Disk", "DVD/CD", "Floppy"]
    assert events[1].detail == "not a bootable disk"


def test_ovmf_booting_the_esp_is_an_attempt_then_a_success() -> None:
    events = parse_boot_events(captured("ovmf-uefi-disk.serial.log"))
    assert kinds(events) == ["attempt", "failed", "attempt", "success"]  # the empty DVD drive comes first
    assert {e.firmware for e in events} == {"ovmf"}
    assert events[-1].detail.startswith('Boot0002 "UEFI Misc Device" from PciRoot')


def test_ovmf_falling_back_to_its_shell_is_no_boot_device() -> None:
    events = parse_boot_events(captured("ovmf-empty-disk.serial.log"))
    assert kinds(events) == ["attempt", "failed", "attempt", "failed", "attempt", "no_boot_device"]
    assert "EFI Internal Shell" in events[-1].detail


def test_ovmf_secure_boot_refusing_an_unsigned_loader_is_a_failed_event() -> None:
    events = parse_boot_events(captured("ovmf-secboot-uefi-disk.serial.log"))
    refused = [e for e in events if e.kind == "failed" and "Access Denied" in e.detail]
    assert len(refused) == 1 and "UEFI Misc Device" in refused[0].detail
    assert "success" not in kinds(events)
    assert kinds(events).count("no_boot_device") == 1  # Shell fallback and "No bootable option" are one event


def test_ovmf_release_build_prints_nothing_on_the_debug_port() -> None:
    assert captured("ovmf-uefi-disk.firmware.log") == ""


def test_ordinary_output_gives_no_events() -> None:
    assert parse_boot_events("Linux version 6.1\nBooting the kernel.\nBdsDxe: something else\n") == []


def test_escape_sequences_and_carriage_returns_are_ignored() -> None:
    line = '\x1b[2J\x1b[01;01H\x1b[=3hBdsDxe: starting Boot0002 "UEFI Misc Device" from PciRoot(0x0)\r\n'
    (event,) = parse_boot_events(line)
    assert (event.kind, event.firmware) == ("success", "ovmf")


def test_no_bootable_device_is_reported_before_its_newline_and_only_once() -> None:
    parser = BootEventParser()
    assert kinds(parser.feed("Booting from Hard Disk...\nBoot failed: not a bootable disk\nNo bootable")) == [
        "attempt", "failed"]
    assert kinds(parser.feed(" device.")) == ["no_boot_device"]  # SeaBIOS then waits: no newline comes
    assert parser.feed("  Retrying in 60 seconds.\n") == []
    assert parser.close() == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), max_size=60),
       st.sampled_from(["seabios-empty-disk.firmware.log", "ovmf-secboot-uefi-disk.serial.log",
                        "ovmf-uefi-disk.serial.log", "seabios-bios-disk.firmware.log"]))
def test_chunks_split_anywhere_give_the_same_events(cuts: list[int], name: str) -> None:
    text = captured(name).encode()
    parser, events, at = BootEventParser(), [], 0
    for size in cuts:
        events += parser.feed(text[at:at + size])
        at += size
    events += parser.feed(text[at:]) + parser.close()
    assert events == parse_boot_events(text)


# --- live firmware ---------------------------------------------------------------------------------

def watch(qemu: PlainQemu, source: str, until: str, timeout: float) -> list[BootEvent]:
    """Feed the growing log to a parser until an event of kind ``until`` arrives."""
    path = qemu.firmware_log if source == "firmware" else qemu.serial_log
    parser, events, offset = BootEventParser(), [], 0
    deadline = time.monotonic() + timeout
    while until not in kinds(events):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {until} event within {timeout} s; got {events}")
        if qemu.proc.poll() is not None:
            raise AssertionError(f"QEMU exited ({qemu.proc.returncode}) before a {until} event; got {events}")
        if path.exists():
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            events += parser.feed(chunk)
        time.sleep(0.02)
    return events


@pytest.fixture
def boot() -> Iterator[list[PlainQemu]]:
    started: list[PlainQemu] = []
    try:
        yield started
    finally:
        for qemu in started:
            qemu.kill()


def test_seabios_boots_the_bios_disk_attempt_then_success(boot: list[PlainQemu]) -> None:
    boot.append(qemu := PlainQemu(bios_disk(), "bios"))
    events = watch(qemu, "firmware", "success", 30)
    assert kinds(events) == ["attempt", "success"]  # booting on to the ready line: test_images


def test_ovmf_boots_the_uefi_disk_attempt_then_success(boot: list[PlainQemu]) -> None:
    boot.append(qemu := PlainQemu(uefi_disk(), "uefi"))
    events = watch(qemu, "serial", "success", 60)
    assert kinds(events)[-2:] == ["attempt", "success"]
    assert "UEFI Misc Device" in events[-1].detail
    assert qemu.firmware() == ""  # Debian's release OVMF: no debug output on 0x402


@pytest.mark.parametrize("firmware,source", [("bios", "firmware"), ("uefi", "serial")])
def test_an_empty_disk_gives_no_boot_device_not_a_hang(boot: list[PlainQemu], firmware: str, source: str) -> None:
    boot.append(qemu := PlainQemu(empty_disk(), firmware))
    events = watch(qemu, source, "no_boot_device", 60)
    assert kinds(events)[0] == "attempt"
    assert kinds(events)[-1] == "no_boot_device"
    assert "success" not in kinds(events)


def test_secure_boot_ovmf_refuses_the_unsigned_systemd_boot(boot: list[PlainQemu]) -> None:
    boot.append(qemu := PlainQemu(uefi_disk(), "uefi-secure"))
    events = watch(qemu, "serial", "no_boot_device", 60)
    assert any(e.kind == "failed" and "Access Denied" in e.detail for e in events)
    assert "success" not in kinds(events)


def test_secure_boot_ovmf_starts_the_signed_shim(boot: list[PlainQemu]) -> None:
    boot.append(qemu := PlainQemu(secure_boot_disk(), "uefi-secure", memory_mib=512))
    events = watch(qemu, "serial", "success", 60)
    assert kinds(events)[-2:] == ["attempt", "success"]
    assert "failed" not in kinds(events)[2:]  # only the empty DVD drive failed
