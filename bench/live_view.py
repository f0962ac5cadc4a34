"""Live view numbers: frames/s on a changing screen (720x400 text, 1024x768 gfx), bytes/s on a static one,
and the latency from a guest screen change to the frame leaving the kernel.

The browser is played by an instant acker, so this measures the kernel side (screen
polling, change detection, PNG encoding), not the network or the browser's decoder.
Run: .venv/bin/python -m bench.live_view [--seconds S]
"""

from __future__ import annotations

import argparse
import io
import statistics
import threading
import time

from PIL import Image

import petri_nb
from petri_nb.notebook.widget import VmView

TEXT_COLOURS = {1: (0, 0, 168), 2: (0, 168, 0)}  # VGA text colours 1 and 2 as QEMU renders them


class InstantBrowser:
    def __init__(self, view: VmView) -> None:
        self.view = view
        self.sizes: set[tuple[int, int]] = set()
        self.frames: list[tuple[float, bytes]] = []  # (time sent, PNG) of each frame
        view.send = self._receive  # type: ignore[method-assign]

    def _receive(self, content: dict, buffers: list[bytes] | None = None) -> None:
        self.frames.append((time.monotonic(), bytes(buffers[0]) if buffers else b""))
        self.sizes.add((content["width"], content["height"]))
        self.view.pump.ack(content["seq"])


def change_latency(vm: petri_nb.Vm, browser: InstantBrowser, samples: int = 20) -> list[float]:
    """Seconds from a `draw N` command to the first frame showing it (an upper bound on
    change-to-frame: it includes the guest drawing, well under a millisecond)."""
    out = []
    for i in range(samples):
        colour = i % 2 + 1  # row 0 alternates blue / green: every draw changes the screen
        first = len(browser.frames)
        sent = time.monotonic()
        vm.console.write(f"draw {colour + 16 * i}\n")
        while True:
            for t, png in browser.frames[first:]:
                pixel = Image.open(io.BytesIO(png)).convert("RGB").getpixel((360, 8))
                if pixel == TEXT_COLOURS[colour]:
                    out.append(t - sent)
                    break
            else:
                first = len(browser.frames)
                time.sleep(0.002)  # a benchmark polling its own recorder, not a test
                continue
            break
    return out


def measure(view: VmView, seconds: float) -> tuple[float, float, float]:
    """(frames/s, bytes/s, polls/s) over ``seconds``."""
    s0 = view.pump.stats
    f0, b0, p0, t0 = s0.frames_sent, s0.bytes_sent, s0.polls, time.monotonic()
    time.sleep(seconds)
    s, dt = view.pump.stats, time.monotonic() - t0
    return (s.frames_sent - f0) / dt, (s.bytes_sent - b0) / dt, (s.polls - p0) / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    with petri_nb.launch("tmk") as vm:
        view = VmView(vm)
        browser = InstantBrowser(view)
        time.sleep(1.0)  # first frame out, screen settled
        fps, bps, pps = measure(view, args.seconds)
        print(f"static 720x400 text screen: {fps:5.1f} frames/s {bps:9.0f} B/s  ({pps:.1f} polls/s)")

        stop = threading.Event()

        def redraw() -> None:  # a text screen that changes all the time
            n = 0
            while not stop.is_set():
                n += 1
                vm.console.write(f"draw {n}\n")
                vm.console.expect(f"drawn {n}")

        writer = threading.Thread(target=redraw)
        writer.start()
        try:
            fps, bps, pps = measure(view, args.seconds)
        finally:
            stop.set()
            writer.join()
        print(f"changing 720x400 text screen: {fps:5.1f} frames/s {bps:9.0f} B/s  ({pps:.1f} polls/s)")
        lat = sorted(change_latency(vm, browser))
        print(f"screen change to frame sent:  median {statistics.median(lat) * 1000:.1f} ms, "
              f"max {lat[-1] * 1000:.1f} ms over {len(lat)} changes")

        vm.console.write("gfx\n")
        vm.console.expect("gfx 1024x768")
        time.sleep(0.5)
        fps, bps, pps = measure(view, args.seconds)
        print(f"animated 1024x768 gfx screen: {fps:5.1f} frames/s {bps:9.0f} B/s  ({pps:.1f} polls/s)")
        print("frame sizes seen:", sorted(browser.sizes))
        view.close()


if __name__ == "__main__":
    main()
