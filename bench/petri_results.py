"""How fast read_petri_results reads a big CI tree, and where the time goes.

Builds 10,000 small test folders as petri writes them (20 runs of 500 tests; ~30 log
lines each, every 25th test with a screenshot, every 10th failed) and times, in
this process: finding the folders, reading them in one process (the plain-Python
baseline: json.loads per line), building the frame, and the whole read with a
process pool. ``python -m bench.petri_results [--tests N] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

from petri_nb.analysis.petri_results import _found, _frame, read_petri_results
from petri_nb.analysis.petri_scan import read_folders

LINES = 30
TESTS_PER_RUN = 500


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 200), (0, 0, 128)).save(out, format="PNG")
    return out.getvalue()


def build(root: Path, tests: int) -> None:
    png = _png()
    for i in range(tests):
        run, n = divmod(i, TESTS_PER_RUN)
        folder = root / f"{9000 + run}_1" / "x64-linux-vmm-tests-logs" / f"x86_64__test_{n:04d}"
        folder.mkdir(parents=True)
        name = f"x86_64::test_{n:04d}"
        (folder / "petri.test").write_text(name)
        lines = []
        for k in range(LINES):
            stamp = f"2026-03-04T05:{k // 60:02d}:{k % 60:02d}.{(i * 7919 + k) % 1000000:06d}Z"
            source = ("petri", "openvmm", "linux", "openhcl")[k % 4]
            message = {"petri": f"{stamp}  INFO petri::vm: step {k}", "openvmm": f"{k}.000100000s  WARN vmm: msr {k}",
                       "linux": f"[    {k}.000000] serial line {k}", "openhcl": f"[{k}.000001] kmsg {k}"}[source]
            lines.append(json.dumps({"timestamp": stamp, "source": source, "severity": "INFO", "message": message}))
        if i % 25 == 0:
            (folder / "screenshot.png").write_bytes(png)
            lines.append(json.dumps({"timestamp": "2026-03-04T05:00:59Z", "attachment": "screenshot.png"}))
        (folder / "petri.jsonl").write_text("\n".join(lines) + "\n")
        if i % 10 == 3:
            (folder / "petri.failed").write_text('Expected PowerOff, got PetriHaltReasonDetail { reason: TripleFault, '
                                                 'detail: "TripleFault { vp: 0 }" }')
        else:
            (folder / "petri.passed").write_bytes(b"")


def timed(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201 - a bench helper
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tests", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, default=None, help="build the tree here and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="petri-bench-"))
    try:
        if not any(root.iterdir()) if root.exists() else True:
            root.mkdir(parents=True, exist_ok=True)
            _, built = timed(build, root, args.tests)
            print(f"built {args.tests} test folders in {built:.1f} s")
        found, t_find = timed(_found, root)
        columns, t_json = timed(read_folders, found)
        frame, t_frame = timed(_frame, columns)
        rows = len(frame)
        _, t_one = timed(read_petri_results, root, workers=1)
        cores = os.cpu_count() or 1
        pooled, t_pool = timed(read_petri_results, root, workers=cores)
        assert pooled.equals(frame)
        table = [
            ("find the test folders (scandir)", t_find),
            ("read them in one process (json.loads per line, plain Python)", t_json),
            ("build the frame (pyarrow strings, vectorised timestamps)", t_frame),
            ("read_petri_results(workers=1): the plain-Python baseline, whole", t_one),
            (f"read_petri_results(workers={cores}): process pool, whole", t_pool),
        ]
        print(f"\n{len(found)} tests, {rows} rows, {cores} cores\n")
        print("| step | seconds | tests/s |\n|---|---:|---:|")
        for what, seconds in table:
            print(f"| {what} | {seconds:.2f} | {len(found) / seconds:,.0f} |")
        print(f"\npool speed-up over the baseline: {t_one / t_pool:.2f}x")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
