"""The sync facade and AsyncVm inside a real ipykernel (nbclient), and in plain scripts.

The kernel's own event loop runs in the cell's thread and stops whenever a cell blocks;
these tests prove VM work lives elsewhere (the runtime loop thread) and so keeps going.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from nbrun import run_notebook, text_of


def _result(cell_text: str) -> str:
    """The last printed line of a cell."""
    return cell_text.strip().splitlines()[-1]


def test_sync_facade_and_top_level_await_work_in_a_real_kernel(tmp_path: Path):
    cells = [
        "import asyncio, sys, threading, time\nimport petri_nb\n"
        "print(sys.prefix, asyncio.get_running_loop().is_running())",
        # Top-level await on AsyncVm, on the kernel's running loop.
        "avm = await petri_nb.launch_async('tmk', name='async-vm')\n"
        "await avm.console.write('echo from-await\\n')\n"
        "print(type(avm).__name__, (await avm.console.expect('from-await')).group(0))",
        # The blocking facade in the same kernel, next to it.
        "vm = petri_nb.launch('tmk', name='sync-vm')\n"
        "vm.console.write('echo from-sync\\n')\n"
        "print(type(vm).__name__, vm.console.expect('from-sync').group(0))",
        # (a) The cell blocks in unrelated work while the guest prints: output is captured meanwhile.
        "writer = threading.Timer(0.2, lambda: [vm.console.write(f'echo during-sleep-{i}\\n') for i in range(20)])\n"
        "writer.start()\n"
        "time.sleep(2.0)  # the unrelated blocking work under test, not synchronisation\n"
        "asleep_until = time.time()\n"
        "writer.join()\n"
        "tl = vm.timeline()\n"
        "seen = tl[(tl.source == 'console') & tl.detail.str.fullmatch(r'during-sleep-\\d+')]\n"
        "print(sorted(seen.detail) == sorted(f'during-sleep-{i}' for i in range(20)),\n"
        "      bool((seen.wall.map(lambda w: w.timestamp()) < asleep_until).all()))",
        # (b) While the cell blocks in a Vm call, a background task on another loop keeps using a VM.
        "ticks = []\n"
        "async def watch():\n"
        "    while len(ticks) < 1000 and not stop.is_set():\n"
        "        await avm.screenshot()\n"
        "        ticks.append(time.monotonic())\n"
        "stop = threading.Event()\n"
        "watcher = threading.Thread(target=asyncio.run, args=(watch(),), daemon=True)\n"
        "watcher.start()\n"
        "threading.Timer(1.0, vm.console.write, args=('poweroff\\n',)).start()\n"
        "blocked_from = time.monotonic()\n"
        "halt = vm.wait_for_halt(timeout=30)\n"
        "blocked_to = time.monotonic()\n"
        "stop.set(); watcher.join()\n"
        "during = [t for t in ticks if blocked_from < t < blocked_to]\n"
        "print(f'{blocked_to - blocked_from:.2f} s blocked, {len(during)} screenshots meanwhile')\n"
        "print(halt.reason.name, blocked_to - blocked_from > 0.9, len(during) >= 5)",
        # A kernel-loop task keeps ticking while the cell awaits an AsyncVm call (top-level await).
        "kernel_ticks = []\n"
        "async def tick():\n"
        "    while True:\n"
        "        kernel_ticks.append(time.monotonic())\n"
        "        await asyncio.sleep(0.02)\n"
        "ticker = asyncio.ensure_future(tick())\n"
        "await avm.console.write('echo tick-test\\n')\n"
        "try:\n"
        "    await avm.console.expect('never-printed', timeout=1.0)\n"
        "except petri_nb.PetriTimeout:\n"
        "    pass\n"
        "ticker.cancel()\n"
        "print(f'{len(kernel_ticks)} kernel-loop ticks')\n"
        "print(len(kernel_ticks) >= 10)",
        "vm.teardown(); await avm.teardown()\n"
        "print(vm.state, avm.state, petri_nb.vm.facade.live_vms())",
    ]
    nb = run_notebook(cells, tmp_path)
    out = [_result(text_of(cell)) for cell in nb.cells]
    assert out[0] == f"{sys.prefix} True"  # this venv's Python, cell running on the kernel's live loop
    assert out[1] == "AsyncVm from-await"
    assert out[2] == "Vm from-sync"
    assert out[3] == "True True", "console lines printed during a blocking cell were lost or captured late"
    assert out[4] == "POWER_OFF True True", "the background task stalled while the cell blocked in a Vm call"
    assert out[5] == "True"
    assert out[6] == "torn down torn down []"


def test_sync_and_async_api_work_in_plain_scripts(tmp_path: Path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import asyncio
        import petri_nb

        with petri_nb.launch("tmk") as vm:
            vm.console.write("echo plain-sync\\n")
            print(vm.console.expect("plain-sync").group(0))

        async def main():
            async with await petri_nb.launch_async("tmk") as avm:
                await avm.console.write("poweroff\\n")
                print((await avm.wait_for_halt(timeout=30)).reason.name)

        asyncio.run(main())
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["plain-sync", "POWER_OFF"]
