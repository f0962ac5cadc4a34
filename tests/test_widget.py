"""The live view widget against a real tmk VM, with the browser's side played in-process."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

import petri_nb
from petri_nb.notebook.widget import VmView
from tests.conftest import wait_until


class Browser:
    """Records what the widget sends and plays the front end's replies (acks, keys, clicks)."""

    def __init__(self, view: VmView) -> None:
        self.view = view
        self.frames: list[tuple[dict, bytes]] = []
        view.send = self._receive  # type: ignore[method-assign]

    def _receive(self, content: dict, buffers: list[bytes] | None = None) -> None:
        self.frames.append((content, bytes(buffers[0]) if buffers else b""))

    def reply(self, content: dict) -> None:
        self.view._on_msg(self.view, content, [])

    def ack_all(self) -> None:
        for meta, _ in list(self.frames):
            self.reply({"type": "ack", "seq": meta["seq"]})

    def image(self, index: int = -1) -> Image.Image:
        return Image.open(io.BytesIO(self.frames[index][1])).convert("RGB")

    def type(self, codes: list[str]) -> None:
        for code in codes:
            self.reply({"type": "key", "code": code, "down": True})
            self.reply({"type": "key", "code": code, "down": False})


@pytest.fixture
def view(vm: petri_nb.Vm) -> Iterator[VmView]:
    v = VmView(vm, ack_timeout=60)
    try:
        yield v
    finally:
        v.close()


def polls_after(view: VmView, n: int = 3) -> None:
    """Wait until the pump has looked at the screen ``n`` more times."""
    start = view.pump.stats.polls
    wait_until(lambda: view.pump.stats.polls >= start + n, timeout=10, what=f"{n} more screen polls")


def test_a_static_screen_sends_one_frame_and_then_nothing(vm: petri_nb.Vm, view: VmView):
    browser = Browser(view)
    wait_until(lambda: browser.frames, what="the first frame")
    browser.ack_all()
    assert browser.image().tobytes() == vm.screenshot().tobytes()
    sent = view.pump.stats.bytes_sent
    polls_after(view, 15)
    assert len(browser.frames) == 1
    assert view.pump.stats.bytes_sent == sent
    vm.console.write("draw 3\n")
    vm.console.expect("drawn 3")
    wait_until(lambda: len(browser.frames) == 2, what="a frame for the changed screen")
    assert browser.image().tobytes() == vm.screenshot().tobytes()


def test_a_slow_browser_gets_the_newest_frame_not_a_backlog(vm: petri_nb.Vm, view: VmView):
    browser = Browser(view)
    for n in (1, 2, 3, 4):  # the first frame plus three changes, never acked
        vm.console.write(f"draw {n}\n")
        vm.console.expect(f"drawn {n}")
        polls_after(view)
    assert len(browser.frames) == view.pump.max_in_flight == 2
    assert view.pump.stats.dropped_stale >= 1
    browser.ack_all()
    wait_until(lambda: len(browser.frames) == 3, what="the held frame after the acks")
    assert browser.image().tobytes() == vm.screenshot().tobytes()  # the screen of `draw 4`
    polls_after(view)
    assert len(browser.frames) == 3


def test_a_new_browser_view_gets_the_current_frame(view: VmView):
    browser = Browser(view)
    wait_until(lambda: browser.frames, what="the first frame")
    browser.ack_all()
    browser.reply({"type": "ready"})
    wait_until(lambda: len(browser.frames) == 2, what="a resent frame")
    assert browser.frames[0][1] == browser.frames[1][1]


def test_keys_typed_in_the_view_reach_the_guest_console_and_screen(vm: petri_nb.Vm, view: VmView):
    browser = Browser(view)
    codes = ["KeyE", "KeyC", "KeyH", "KeyO", "Space", "KeyH", "KeyI", "Enter"]
    browser.type(codes)
    vm.console.expect(r"echo hi\r?\nhi\r?\n")  # tmk echoes each key, then runs the line
    wait_until(lambda: len(vm.timeline().query("kind == 'send_input()'")) == 2 * len(codes), what="key ups")
    sent = vm.timeline().query("kind == 'send_input()'")
    assert (sent["detail"].str.startswith("ok")).all()
    assert view.error == ""


def test_unknown_and_malformed_browser_messages_are_ignored(vm: petri_nb.Vm, view: VmView):
    browser = Browser(view)
    for junk in ({"type": "key", "code": "NoSuchKey", "down": True}, {"type": "pointer", "x": "left"},
                 {"type": "action", "action": "rm -rf /"}, {"type": 7}, "not a dict"):
        view._on_msg(view, junk, [])
    browser.reply({"type": "pointer", "x": 0.5, "y": 0.5, "buttons": 1})
    wait_until(lambda: len(vm.timeline().query("kind == 'send_input()'")) == 1, what="the pointer event")
    assert vm.state == "running"
    assert view.error == ""


def test_guest_text_reaches_the_status_bar_as_plain_text(vm: petri_nb.Vm, view: VmView):
    evil = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    vm.console.write(f"echo {evil}\n")
    wait_until(lambda: view.console_line == evil, what="the console line in the status bar")
    vm.console.write("poweroff\n")
    vm.wait_for_halt()
    wait_until(lambda: view.state == "halted" and view.halt_reason == "POWER_OFF", what="the halt in the status")
    assert view.halt_detail == vm.last_halt.detail
    # The front end renders traits with textContent only; it has no HTML sink at all.
    js = (Path(petri_nb.__file__).parent.parent / "widgets" / "vmview.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "outerHTML" not in js


def test_buttons_reset_pause_and_resume_the_vm(vm: petri_nb.Vm, view: VmView):
    browser = Browser(view)
    browser.reply({"type": "action", "action": "pause"})
    wait_until(lambda: view.state == "paused", what="paused state")
    browser.reply({"type": "action", "action": "resume"})
    wait_until(lambda: view.state == "running", what="running state")
    vm.console.write("poweroff\n")
    vm.wait_for_halt()
    browser.reply({"type": "action", "action": "reset"})
    wait_until(lambda: len(vm.timeline().query("kind == 'reset()'")) == 1, what="reset() on the timeline")
    wait_until(lambda: view.state == "running", what="running after reset")
    vm.console.expect("tmk: ready")


def test_power_off_button_presses_the_acpi_power_button(vm: petri_nb.Vm, view: VmView):
    # tmk obeys the ACPI power button: QEMU reports POWERDOWN and the guest powers off.
    Browser(view).reply({"type": "action", "action": "powerdown"})  # "poweroff" is the server's forced quit
    wait_until(lambda: len(vm.timeline().query("kind == 'POWERDOWN'")) == 1, what="QEMU's POWERDOWN event")
    assert vm.wait_for_halt(timeout=20).reason is petri_nb.HaltReason.POWER_OFF
    assert vm.timeline().query("kind == 'send_shutdown()'")["detail"].iloc[0].startswith("ok")
    wait_until(lambda: view.state == "halted", what="the halted state in the view")
    assert view.error == ""


def test_failed_button_actions_show_an_error(vm: petri_nb.Vm, view: VmView):
    vm.console.write("poweroff\n")
    vm.wait_for_halt()
    Browser(view).reply({"type": "action", "action": "resume"})
    wait_until(lambda: "cannot resume" in view.error, what="the error in the status bar")


def test_the_view_stops_when_the_vm_is_torn_down():
    vm = petri_nb.launch("tmk")
    view = vm.view()
    assert vm.view() is view
    vm.teardown()
    wait_until(lambda: not view.pump.running, what="the pump to stop")
    assert view.state == "torn down" and view.stopped_at > 0
    view.close()


def test_send_shutdown_rejects_unknown_kinds(vm: petri_nb.Vm):
    with pytest.raises(petri_nb.PetriError, match="'poweroff' or 'reboot'"):
        vm.send_shutdown("explode")
    with pytest.raises(petri_nb.PetriError, match="agent"):
        vm.send_shutdown("reboot")  # tmk has no agent and no ACPI reboot button exists


def test_gfx_mode_changes_the_resolution_and_animates_and_text_mode_comes_back(vm: petri_nb.Vm, view: VmView):
    browser = Browser(view)
    wait_until(lambda: browser.frames, what="the first frame")
    assert (browser.frames[-1][0]["width"], browser.frames[-1][0]["height"]) == (720, 400)
    browser.ack_all()
    vm.console.write("gfx\n")
    vm.console.expect("tmk: gfx 1024x768")

    def animated_frames() -> int:
        browser.ack_all()
        return sum(1 for meta, _ in browser.frames if (meta["width"], meta["height"]) == (1024, 768))

    wait_until(lambda: animated_frames() >= 5, what="five frames of the gfx animation")
    vm.console.write("echo still listening\n")  # commands still work between animation frames
    vm.console.expect("still listening")
    vm.console.write("text\n")
    vm.console.expect("tmk: text")
    wait_until(lambda: (browser.ack_all(), browser.frames[-1][0]["width"] == 720)[1], what="a text-mode frame")
    assert browser.image().tobytes() == vm.screenshot().tobytes()


def test_the_view_carries_the_screen_as_a_png_for_static_renderings(vm: petri_nb.Vm, view: VmView):
    import base64

    bundle = view._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in bundle
    png = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"]))).convert("RGB")
    assert png.tobytes() == vm.screenshot().tobytes()
    assert view.view_id == vm.aio.view_sockets["vnc"].parent.name  # the browser's handle: a name, not a path
