"""%petri debugging, checkpoint, agent and fleet subcommands against real QEMU (tmk, Linux) and a real Dask cluster."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import wait_until
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from linux_vm import booted_linux

import petri_nb
from petri_nb.notebook.magics import RunOutput
from petri_nb.vm.facade import live_vms


def petri(shell: InteractiveShell, line: str) -> object:
    return shell.run_line_magic("petri", line)


def test_registers_memory_and_disassembly_of_tmk(shell: InteractiveShell, vm: petri_nb.Vm):
    petri(shell, f"use {vm.name}")
    regs = petri(shell, "regs")
    assert isinstance(regs, pd.DataFrame) and {"EIP", "CR0", "EFL"} <= set(regs["register"])
    picked = petri(shell, "regs --cpu 0 eip cr0 CS.base")
    assert sorted(picked["register"]) == ["CR0", "CS.base", "EIP"] and set(picked["cpu"]) == {0}
    assert "PE" in picked.set_index("register").loc["CR0", "decoded"]
    # The counter variable by symbol, by hex and by decimal address: the same bytes.
    counter = vm.symbols()["counter"]
    by_symbol = petri(shell, "x counter 4")
    assert by_symbol == petri(shell, f"x {counter:#x} 4") == petri(shell, f"x {counter} 4 --phys")
    assert by_symbol.startswith(f"{counter:016x}  00 00 00 00") and not hasattr(by_symbol, "_repr_html_")
    vm.console.write("draw 5\n")
    vm.console.expect("drawn 5", timeout=10)
    row = " ".join(["db 05"] * 8) + "  |" + "." * 16 + "|"
    assert petri(shell, "x 0xb8000 32 --phys").splitlines() == [f"00000000000b8000  {row}", f"00000000000b8010  {row}"]
    dis = petri(shell, "dis run_command -n 3")
    assert len(dis) == 3 and dis["address"][0] == vm.symbols()["run_command"] and dis["symbol"][0] == "run_command"
    assert len(petri(shell, "dis")) == 20  # default: 20 instructions from the current one
    assert vm.state == "running"


def test_breakpoint_step_continue_through_the_magics(shell: InteractiveShell, vm: petri_nb.Vm):
    petri(shell, f"use {vm.name}")
    addr = vm.symbols()["run_command"]
    assert petri(shell, "break run_command") == f"breakpoint at {addr:#x} (run_command)"
    petri(shell, "send count")
    wait_until(lambda: vm.breakpoint_stop is not None, timeout=10, what="the breakpoint hit")
    assert vm.breakpoint_stop.addr == addr
    stepped = petri(shell, "step")
    pc = vm.register("EIP")
    assert pc != addr and re.fullmatch(rf"stopped at {pc:#x} \(\w+(\+0x[0-9a-f]+)?\)", stepped)
    assert petri(shell, f"break --delete {addr}") == f"breakpoint at {addr:#x} (run_command) removed"
    assert petri(shell, "continue") is None
    assert petri(shell, r"expect 'count=\d+'") == "count=1"
    kinds = list(petri(shell, "timeline")["kind"])
    assert {"break_at()", "breakpoint", "step()", "remove_breakpoint()", "continue_()"} <= set(kinds)


def test_checkpoint_rewind_and_the_checkpoint_table(shell: InteractiveShell, vm: petri_nb.Vm):
    petri(shell, f"use {vm.name}")
    assert list(petri(shell, "checkpoints").columns) == ["name", "uptime_s", "bytes", "save_s"]
    assert petri(shell, "checkpoint before").startswith("checkpoint before: ")
    shell.run_cell_magic("petri", "", "send count\nexpect count=1")
    assert petri(shell, "checkpoint").startswith("checkpoint cp-1: ")
    table = petri(shell, "checkpoints")
    assert list(table["name"]) == ["before", "cp-1"] and (table["bytes"] > 0).all()
    assert petri(shell, "rewind before").startswith(f"rewound {vm.name} to checkpoint before")
    assert shell.run_cell_magic("petri", "", r"send count" + "\n" + r"expect 'count=\d+'") == "count=1"
    petri(shell, "rewind")  # the latest: cp-1, after the first count
    assert shell.run_cell_magic("petri", "", r"send count" + "\n" + r"expect 'count=\d+'") == "count=2"
    with pytest.raises(UsageError, match="rewind: PetriError: rewind\\(\\): no checkpoint named 'nope'; have before"):
        petri(shell, "rewind nope")
    assert vm.state == "running"


def test_run_cell_forms_on_a_guest_without_agent_fail_fast_with_one_line(shell: InteractiveShell, vm: petri_nb.Vm):
    petri(shell, f"use {vm.name}")
    start = time.monotonic()
    cases = [
        ("run --timeout 5", "echo hi\necho there\n", "^%petri run: AgentError: VM .* has no guest agent"),
        ("", "# a script follows\nrun\necho hi\n", "^line 2: %petri run: AgentError: .*no guest agent"),
        ("run echo hi", "echo there\n", "^%petri run: give the command on the `run` line or as the rest"),
        ("", "run --timeout x\necho hi", "^line 1: %petri run: argument --timeout: not a number"),
        ("run", "\n\n", "^%petri run: needs a command"),
    ]
    for line, cell, message in cases:
        with pytest.raises(UsageError, match=message) as info:
            shell.run_cell_magic("petri", line, cell)
        assert "\n" not in str(info.value)
    assert time.monotonic() - start < 5
    with pytest.raises(UsageError, match="takes no arguments on its first line"):
        shell.run_cell_magic("petri", "runx", "ls")
    assert vm.state == "running"


def test_run_output_is_plain_text_with_exit_code_and_escapes_replaced():
    result = petri_nb.vm.agent.AgentResult("x", 3, b"out \x1b[31mred\x1b[0m <b>\r\n", b"err\x07\n", 0.25)
    shown = RunOutput(result)
    assert shown == "exit code 3 (failed) after 0.25 s\n--- stdout ---\nout \ufffd[31mred\ufffd[0m <b>\n" \
                    "--- stderr ---\nerr\ufffd"
    assert repr(shown) == str(shown) and not hasattr(shown, "_repr_html_")
    assert (shown.exit_code, shown.ok, shown.result) == (3, False, result)


@pytest.mark.slow
def test_run_in_the_linux_guest_line_and_cell_forms(shell: InteractiveShell):
    with booted_linux() as (vm, _agent, boot_s):
        print(f"linux boot-to-agent under TCG: {boot_s:.1f} s")
        petri(shell, f"use {vm.name}")
        out = petri(shell, "run echo \"a  b\" | tr a-z A-Z; echo oops >&2; exit 3")
        assert isinstance(out, RunOutput) and out.exit_code == 3 and not out.ok
        assert out.result.stdout == b"A  B\n" and out.result.stderr == b"oops\n"
        assert out.startswith("exit code 3 (failed)") and "--- stdout ---\nA  B" in out and "oops" in out
        script = "cd /tmp\nprintf 'x\\033[2Jy\\n' > f\ncat f\nfor i in 1 2; do echo line $i; done\n"
        cell = shell.run_cell_magic("petri", "run --timeout 20", script)
        assert cell.ok and cell.result.stdout == b"x\x1b[2Jy\nline 1\nline 2\n"
        assert "x\ufffd[2Jy\nline 1\nline 2" in cell and "\x1b" not in cell
        again = shell.run_cell_magic("petri", "", "run\nuname -s")
        assert again.result.stdout == b"Linux\n"
        with pytest.raises(UsageError, match="run: PetriTimeout: guest command 'sleep 30' did not finish within 1 s"):
            petri(shell, "run --timeout 1 sleep 30")
        assert petri(shell, "run -- true").ok
        petri(shell, "teardown")


def test_fleet_of_four_tmk_runs_on_two_workers(shell: InteractiveShell, tmp_path: Path, capsys):
    displayed = []
    shell.display_pub.publish = lambda data, **kw: displayed.append(data)
    start = time.monotonic()
    outcomes = petri(shell, f"fleet halt-each -n 4 --workers 2 --rundir {tmp_path / 'runs'}")
    took = time.monotonic() - start
    print(f"4 tmk runs on 2 workers via %petri fleet: {took:.1f} s")
    assert isinstance(outcomes, pd.DataFrame) and list(outcomes["index"]) == [0, 1, 2, 3]
    assert list(outcomes["status"]) == ["ok"] * 4
    assert list(outcomes["halt_reason"]) == ["POWER_OFF", "RESET", "TRIPLE_FAULT", "PANIC"]
    assert outcomes.attrs["rundir"] == str(tmp_path / "runs")
    assert len(list((tmp_path / "runs").glob("*.parquet"))) == 4
    counts = "".join(d.get("text/plain", "") for d in displayed)
    assert "halt_reason" in counts and "POWER_OFF" in counts and "PANIC" in counts
    assert not live_vms()
