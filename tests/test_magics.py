"""%petri / %%petri: in a real kernel (nbclient) and, for bad input, in an in-process IPython shell."""

from __future__ import annotations

import _thread
import ast
import re
import shutil
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from nbrun import html_of, run_notebook, text_of
from PIL import Image

import petri_nb
from petri_nb.notebook.magics import SUBCOMMANDS, handlers
from petri_nb.vm.facade import live_vms


def test_magics_drive_tmk_through_reset_and_poweroff_in_a_real_kernel(tmp_path: Path):
    cells = [
        "import sys; print(sys.prefix)",
        "%load_ext petri_nb",
        "%petri launch tmk --name nbvm",
        "%petri ls",
        "%petri reset",
        "%petri expect 'tmk: ready' --timeout 30",
        "%petri send poweroff",
        "%petri wait-halt --allow-reset --timeout 30",
        "%petri timeline",
        "%petri console --tail 2",
        "%petri teardown",
        "%petri ls",
        "%petri reset",
    ]
    nb = run_notebook(cells, tmp_path, tags={len(cells) - 1: ["raises-exception"]})
    out = [text_of(cell) for cell in nb.cells]
    assert out[0].strip() == sys.prefix  # the kernel is this venv's Python
    assert "VmView" in out[2]  # the launched Vm displays as the live view widget
    assert "nbvm" in out[3] and "running" in out[3]
    assert "tmk: ready" in out[5]
    assert "POWER_OFF" in out[7]
    timeline = html_of(nb.cells[8])
    assert "reset()" in timeline and "POWER_OFF" in timeline and "nbvm" in timeline
    assert out[9].strip().endswith("tmk: poweroff")
    assert "nbvm" not in out[11]
    # IPython shows a UsageError as one line on stderr, no traceback.
    assert [(o.output_type, o.get("name")) for o in nb.cells[12].outputs] == [("stream", "stderr")]
    assert out[12].startswith("UsageError: %petri: no current VM") and out[12].count("\n") == 1


BAD_INPUTS = [
    ("", "needs a subcommand"),
    ("fly", "unknown subcommand 'fly'"),
    ("'unclosed", "cannot split"),
    ("--bogus", "required: subcommand"),
    ("launch nope", "unknown guest 'nope'"),
    ("launch --accel warp", "unknown accel 'warp'"),
    ("launch tmk extra", "unrecognized arguments: extra"),
    ("launch --name", "expected one argument"),
    ("launch --cpus 0", "argument --cpus: must be at least 1, not '0'"),
    ("launch --cpus two", "argument --cpus: not a whole number"),
    ("launch --firmware coreboot",
     "argument --firmware: unknown firmware 'coreboot'; use bios, qboot, uefi, uefi-secure"),
    ("launch --memory -512", "argument --memory: must be at least 1 MiB, not '-512'"),
    ("launch --memory 1.5", "argument --memory: not a whole number of MiB"),
    ("launch --ready-timeout inf", "argument --ready-timeout: must be a positive, finite number"),
    ("launch --ready-timeout nan", "argument --ready-timeout: must be a positive, finite number"),
    ("launch --ready '(unclosed'", "argument --ready: not agent, boot, none or a valid regular expression"),
    ("launch --agent ssh", "argument --agent: unknown agent 'ssh'; use qga"),
    ("launch --disk ''", "argument --disk: empty path"),
    ("launch --disk", "expected one argument"),
    ("launch --tpm=yes", "ignored explicit argument"),
    ("record --cpus 2", "NotSupported: record/replay in QEMU 7.2 supports one vCPU"),
    ("record tmk extra", "unrecognized arguments: extra"),
    ("replay /no/such/recording", "is no readable recording"),
    ("replay a b", "unrecognized arguments: b"),
    ("rstep 1", "unrecognized arguments: 1"),
    ("rcontinue --far", "unrecognized arguments: --far"),
    ("seek later", "instruction count or 'end'"),
    ("seek", "required: ICOUNT"),
    ("use", "required: name"),
    ("type", "required: text"),
    ("type caf\u00e9", "cannot type '\u00e9' on a US keyboard"),
    ("key", "required: COMBO"),
    ("key ctrl-alt-dlete", "unknown key 'dlete' in 'ctrl-alt-dlete'"),
    ("key ret --hold -1", "argument --hold: must be a positive"),
    ("needle", "required: name, x, y, w, h"),
    ("needle menu 0 0 0 10", "argument w: must be at least 1"),
    ("needle menu 0 0 10 10 --threshold 1.5", "must be a score in"),
    ("use ghost", "no running VM named 'ghost'"),
    ("use a b", "unrecognized arguments: b"),
    ("ls -l", "unrecognized arguments: -l"),
    ("reset now", "unrecognized arguments: now"),
    ("pause 1", "unrecognized arguments: 1"),
    ("resume --fast", "unrecognized arguments: --fast"),
    ("wait-halt --timeout -1", "positive, finite"),
    ("wait-halt --timeout nan", "positive, finite"),
    ("wait-halt --timeout soon", "not a number of seconds"),
    ("wait-halt --allow-reset=yes", "ignored explicit argument"),
    ("shutdown --force", "unrecognized arguments: --force"),
    ("screenshot out.png", "unrecognized arguments: out.png"),
    ("screen-text now", "unrecognized arguments: now"),
    ("wait-screen --text '('", "bad regular expression"),
    ("wait-screen --still -1", "positive, finite"),
    ("wait-screen --changed --timeout x", "not a number of seconds"),
    ("inspect a b", "unrecognized arguments: b"),
    ("inspect no/such/path", "no current VM"),
    ("timeline --all", "unrecognized arguments: --all"),
    ("save now", "unrecognized arguments: now"),
    ("restore now", "unrecognized arguments: now"),
    ("console --tail 0", "at least 1"),
    ("console --tail x", "not a whole number"),
    ("send", "required: text"),
    ("expect", "required: regex"),
    ("expect x --timeout inf", "positive, finite"),
    ("expect '('", "argument regex: bad regular expression '\\(': missing \\)"),
    ("teardown now", "unrecognized arguments: now"),
    ("run", "no current VM"),
    ("run --timeout 0 true", "positive, finite"),
    ("run --bogus", "unrecognized arguments: --bogus"),
    ("regs --cpu -1", "must be 0 or more"),
    ("regs --cpu one", "not a whole number"),
    ("x", "required: ADDR"),
    ("x 0x10 0", "at least 1"),
    ("x 'a b'", "not an address"),
    ("x -5", "address out of range"),
    ("x 0x1 2 3", "unrecognized arguments: 3"),
    ("dis -n 0", "at least 1"),
    ("dis 1 2", "unrecognized arguments: 2"),
    ("dis 0x1ffffffffffffffff", "out of range"),
    ("break", "required: ADDR"),
    ("break --delete", "required: ADDR"),
    ("break 1+2", "not an address"),
    ("step 2", "unrecognized arguments: 2"),
    ("continue now", "unrecognized arguments: now"),
    ("checkpoint a b", "unrecognized arguments: b"),
    ("rewind a b", "unrecognized arguments: b"),
    ("checkpoints all", "unrecognized arguments: all"),
    ("fleet", "required: experiment, -n"),
    ("fleet halt-each", "required: -n"),
    ("fleet halt-each -n 0", "at least 1"),
    ("fleet halt-each -n 2 --workers 1 --address tcp://127.0.0.1:1", "not allowed with argument"),
    ("fleet nope -n 2", "unknown experiment 'nope'; built-in experiments: halt-each"),
    ("fleet halt-each -n 1 --workers 0", "at least 1"),
]


LAUNCH_LINES = [
    ("launch", (None,), {}),  # no GUEST: tmk, or the guest the files given describe (issue 22)
    ("launch tmk --name x", ("tmk",), {"name": "x"}),
    ("launch linux --ready none", ("linux",), {"ready": None}),
    ("launch --ready agent --ready-timeout 90", (None,), {"ready": "agent", "ready_timeout": 90.0}),
    ("launch --ready boot --accel kvm", (None,), {"ready": "boot", "accel": "kvm"}),
    ("launch --disk a.qcow2 --disk '/images/b c.raw' --firmware uefi",
     (None,), {"disks": ["a.qcow2", "/images/b c.raw"], "firmware": "uefi"}),
    ("launch mine --kernel ~/vmlinuz --initrd ~/initrd.img --append 'console=ttyS0 quiet' --cdrom /x.iso "
     "--firmware uefi-secure --memory 2048 --cpus 4 --tpm --agent qga --ready 'login: ?$' --ready-timeout 2.5 "
     "--name dev --accel auto",
     ("mine",), {"kernel": "/home/u/vmlinuz", "initrd": "/home/u/initrd.img", "append": "console=ttyS0 quiet",
                 "cdrom": "/x.iso", "firmware": "uefi-secure", "memory_mib": 2048, "cpus": 4, "tpm": True,
                 "agent": "qga", "ready": "login: ?$", "ready_timeout": 2.5, "name": "dev", "accel": "auto"}),
]


@pytest.mark.parametrize(("line", "args", "kwargs"), LAUNCH_LINES, ids=[line for line, _, _ in LAUNCH_LINES])
def test_launch_passes_exactly_the_options_typed_to_petri_nb_launch(
        shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch, line: str, args: tuple, kwargs: dict):
    calls = []

    def fake_launch(*a: object, **kw: object) -> None:
        calls.append((a, kw))
        raise petri_nb.LaunchError("not launched: this test checks the keywords only")

    monkeypatch.setattr(petri_nb.vm.facade, "launch", fake_launch)
    monkeypatch.setenv("HOME", "/home/u")
    with pytest.raises(UsageError, match=r"^%petri launch: LaunchError: not launched"):
        shell.run_line_magic("petri", line)
    assert calls == [(args, kwargs)]
    assert shell.magics_manager.registry["PetriMagics"]._current is None  # a failed launch changes nothing


def test_every_subcommand_has_bad_input_cases():
    covered = {line.split()[0] for line, _ in BAD_INPUTS if line and line.split()[0] in SUBCOMMANDS}
    assert covered == set(SUBCOMMANDS)


@pytest.mark.parametrize(("line", "message"), BAD_INPUTS, ids=[line or "<empty>" for line, _ in BAD_INPUTS])
def test_bad_input_is_a_one_line_usage_error(shell: InteractiveShell, line: str, message: str):
    with pytest.raises(UsageError, match=message) as info:
        shell.run_line_magic("petri", line)
    assert "\n" not in str(info.value) and str(info.value).startswith("%petri")
    assert not live_vms()


def test_vm_subcommands_without_a_vm_say_how_to_get_one(shell: InteractiveShell):
    valid_args = {"send": " hello", "expect": " hello", "run": " true", "x": " 0", "break": " 0", "seek": " 0",
                  "type": " hi", "key": " ret", "needle": " n 0 0 1 1"}
    for name, sub in SUBCOMMANDS.items():
        if sub.needs_vm or name == "teardown":
            with pytest.raises(UsageError, match="no current VM; start one with `%petri launch`"):
                shell.run_line_magic("petri", name + valid_args.get(name, ""))


def test_runtime_errors_become_usage_errors_naming_the_cause(shell: InteractiveShell, vm: petri_nb.Vm):
    assert shell.run_line_magic("petri", f"use {vm.name}") is not None
    cases = {
        "wait-halt --timeout 0.1": "wait-halt: PetriTimeout: .*timed out after 0.1 s waiting for the VM to halt",
        "expect nothing-like-this --timeout 0.1": "expect: PetriTimeout: .*'nothing-like-this'",
        "expect '('": "bad regular expression",
        f"launch --name {vm.name}": "already running",
        "inspect no/such/path": "inspect: .*no/such",
        "shutdown --reboot": "shutdown: AgentError",
        "run true": "run: AgentError: VM .* has no guest agent",
        "regs --cpu 3": "regs: PetriError: no vCPU 3",
        "regs EIP XYZ": "regs: unknown register 'XYZ'; known: .*EIP",
        "x 0x40000000 16": "x: PetriError: cannot read 16 bytes at virtual address 0x40000000",
        "x nope": "x: PetriError: unknown symbol 'nope'",
        "dis nope": "dis: PetriError: unknown symbol 'nope'",
        "dis -n 10001": "dis: PetriError: count must be",
        "break --delete 0x100000": "break: PetriError: no breakpoint at",
        "rewind": "rewind: PetriError: .*no checkpoint taken yet",
        "checkpoint ''": "checkpoint: PetriError: checkpoint name must be a non-empty string",
        "fleet halt-each -n 1 --rundir /proc/nope": "fleet: cannot use run directory '/proc/nope'",
    }
    for line, message in cases.items():
        with pytest.raises(UsageError, match=message) as info:
            shell.run_line_magic("petri", line)
        assert "\n" not in str(info.value)
    assert vm.state == "running"


def test_subcommands_return_rich_objects_and_plain_guest_text(shell: InteractiveShell):
    vm = shell.run_line_magic("petri", "launch")
    assert isinstance(vm, petri_nb.Vm) and vm.state == "running"
    assert isinstance(shell.run_line_magic("petri", "screenshot"), Image.Image)
    assert list(shell.run_line_magic("petri", "ls")["name"]) == [vm.name]
    shell.run_line_magic("petri", "pause")
    assert vm.state == "paused"
    shell.run_line_magic("petri", "resume")
    # Guest text with a terminal escape and HTML comes back as plain text, escape neutralised.
    shell.run_line_magic("petri", "send echo <b>\x1b[31mred</b>")
    match = shell.run_line_magic("petri", "expect '<b>.*</b>'")
    assert "\x1b" not in match and "<b>" in match and not hasattr(match, "_repr_html_")
    assert repr(match) == str(match)
    assert shell.run_line_magic("petri", "console --tail 1").endswith("red</b>")
    text = shell.run_line_magic("petri", "screen-text")
    assert text.startswith("tmk") and text.endswith("[read from the VGA text buffer]")
    assert isinstance(shell.run_line_magic("petri", "wait-screen --text '^tmk' --still 0.3 --timeout 20"), Image.Image)
    with pytest.raises(UsageError, match="needs --text REGEX, --changed, --still S or --like NEEDLE"):
        shell.run_line_magic("petri", "wait-screen")
    tree = shell.run_line_magic("petri", "inspect status")
    assert "running" in set(tree["value"].astype(str))
    assert shell.run_line_magic("petri", "shutdown") is None  # ACPI power button: tmk ignores it
    frame = shell.run_line_magic("petri", "timeline")
    assert {"console.write()", "console.expect()", "pause()", "resume()", "inspect()"} <= set(frame["kind"])
    shell.run_line_magic("petri", "teardown")
    assert vm.aio.torn_down and not live_vms()


def test_cell_magic_runs_lines_in_order_and_stops_at_the_first_failure(shell: InteractiveShell):
    shell.run_line_magic("petri", "launch --name cellvm")
    with pytest.raises(UsageError, match=r"^line 4: %petri: unknown subcommand 'bogus'"):
        shell.run_cell_magic("petri", "", "send echo one\n\n# a comment\nbogus\nsend echo two\n")
    # Line order and the stop are visible on the timeline: exactly one console write happened.
    kinds = list(shell.run_line_magic("petri", "timeline")["kind"])
    assert kinds.count("console.write()") == 1
    assert str(shell.run_cell_magic("petri", "", "expect one\nls")["name"][0]) == "cellvm"
    with pytest.raises(UsageError, match="takes no arguments on its first line"):
        shell.run_cell_magic("petri", "reset", "ls")


def test_use_switches_the_current_vm(shell: InteractiveShell):
    first = shell.run_line_magic("petri", "launch --name first")
    second = shell.run_line_magic("petri", "launch --name second")
    assert list(shell.run_line_magic("petri", "ls").query("current")["name"]) == ["second"]
    assert shell.run_line_magic("petri", "use first").aio is first.aio
    shell.run_line_magic("petri", "teardown")
    assert first.aio.torn_down and not second.aio.torn_down
    with pytest.raises(UsageError, match="no current VM"):
        shell.run_line_magic("petri", "reset")
    shell.run_line_magic("petri", "teardown --all")
    assert second.aio.torn_down


def test_help_documents_every_subcommand(shell: InteractiveShell):
    doc = shell.find_line_magic("petri").__doc__
    for name, sub in SUBCOMMANDS.items():
        assert f"%petri {name}" in doc and sub.help in doc
    assert shell.run_line_magic("petri", "--help") == doc == shell.run_line_magic("petri", "help")
    # Usage lines are the line magic's (`%petri NAME ...`); `%%petri` is only the cell form.
    for name, sub in SUBCOMMANDS.items():
        assert sub.usage().startswith(f"%petri {name}") and f"\n  {sub.usage()}\n" in doc
        assert f"%%petri {name} [" not in doc
    assert "  %petri launch [GUEST] [--kernel PATH] [--initrd PATH] [--append TEXT] [--disk PATH]... " in doc
    # launch's usage line is written by hand (GUEST first, as in issue 13): it names every option.
    launch = SUBCOMMANDS["launch"]
    options = {flag for action in launch.parser._actions for flag in action.option_strings} - {"-h", "--help"}
    assert options == set(re.findall(r"--[\w-]+", launch.usage()))


# -- property: random argument strings give success or UsageError, never another error or a hang --

TOKENS = st.sampled_from([
    "--timeout", "--tail", "--name", "--accel", "--allow-reset", "--reboot", "--all", "--path", "-x", "--", "-",
    "--cpu", "--phys", "--delete", "-n", "0xb8000", "run_command", "EIP",
    "0", "-1", "0.05", "2", "nan", "inf", "1e400", "x", "(", "[", "'", '"', "\\", "=", "a b", "\x00", "é",
])
ARGS = st.one_of(st.lists(st.one_of(TOKENS, st.text(max_size=6)), max_size=5).map(" ".join), st.text(max_size=30))


# The deadline includes relaunching the VM after an example tore it down; each magic call alone gets 10 s.
@settings(max_examples=120, deadline=timedelta(seconds=20), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subcommand=st.sampled_from([*SUBCOMMANDS, "bogus"]), args=ARGS)
def test_random_arguments_give_success_or_usage_error_quickly(shell: InteractiveShell, subcommand: str, args: str):
    current = shell.magics_manager.registry["PetriMagics"]._current
    if current is not None and not current.torn_down and current.recording is not None:
        petri_nb.Vm(current).teardown()  # a recording or replay from `record`/`replay`: it cannot be reset
        shutil.rmtree(current.recording, ignore_errors=True)
    if current is None or current.torn_down:
        shell.run_line_magic("petri", "launch")
    elif current.state != "running":
        petri_nb.Vm(current).reset()
    line = f"{subcommand} {args}"
    if subcommand in ("wait-halt", "expect"):
        line += " --timeout 0.05"  # the last --timeout wins: a valid random call cannot wait long
    start = time.monotonic()
    try:
        shell.run_line_magic("petri", line)
    except UsageError as e:
        assert "\n" not in str(e)
    assert time.monotonic() - start < 10, f"{line!r} took too long"
    for aio in live_vms():  # keep at most the current VM between examples
        if aio is not shell.magics_manager.registry["PetriMagics"]._current:
            petri_nb.Vm(aio).teardown()


def test_long_waits_show_a_progress_bar_saying_what_is_awaited(shell: InteractiveShell, vm: petri_nb.Vm, capsys):
    shell.run_line_magic("petri", f"use {vm.name}")
    shell.run_line_magic("petri", "ls")
    assert "waiting for" not in capsys.readouterr().err  # quick calls show no bar
    with pytest.raises(UsageError, match="PetriTimeout"):
        shell.run_line_magic("petri", "wait-halt --timeout 0.8")
    assert f"waiting for {vm.name} to halt" in capsys.readouterr().err  # tqdm.auto is the text bar here


def test_save_and_restore_round_trip_through_the_magics(shell: InteractiveShell, vm: petri_nb.Vm):
    if not callable(getattr(vm.aio, "save_state", None)):
        pytest.skip("AsyncVm.save_state is not in this tree yet (%petri save says so: see the test above)")
    shell.run_line_magic("petri", f"use {vm.name}")
    with pytest.raises(UsageError, match="nothing saved for"):
        shell.run_line_magic("petri", "restore")
    shell.run_cell_magic("petri", "", "send count\nexpect 'count=1'")
    assert shell.run_line_magic("petri", "save").startswith("saved ")
    assert shell.run_line_magic("petri", "save").startswith("saved ")  # replaces the saved state
    # One store: the saved state is the checkpoint "saved", listed with the others.
    assert list(shell.run_line_magic("petri", "checkpoints")["name"]) == ["saved"]
    shell.run_cell_magic("petri", "", "send count\nexpect 'count=2'")
    assert shell.run_line_magic("petri", "restore").startswith("restored ")
    assert shell.run_cell_magic("petri", "", "send count\nexpect 'count=\\d+'") == "count=2"


def test_use_returns_the_one_handle_of_a_users_vm(shell: InteractiveShell, vm: petri_nb.Vm):
    # The same Vm the user holds, so the magics show (and pump frames for) one live view, not a second.
    assert shell.run_line_magic("petri", f"use {vm.name}") is vm
    assert shell.run_line_magic("petri", f"use {vm.name}") is vm


def test_handlers_use_only_the_public_facade():
    tree = ast.parse(Path(handlers.__file__).read_text())
    reached = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert "aio" not in reached and not {"run_blocking", "launch_async", "AsyncVm"} & imported


def test_ctrl_c_cancels_a_wait_and_leaves_the_vm_usable(shell: InteractiveShell, vm: petri_nb.Vm, capsys):
    shell.run_line_magic("petri", f"use {vm.name}")
    threading.Timer(0.3, _thread.interrupt_main).start()  # what a kernel interrupt does
    result = shell.run_cell("%petri wait-halt")  # as a cell, so IPython shows the error as it would to a user
    assert isinstance(result.error_in_exec, UsageError)
    shown = capsys.readouterr()
    # One line naming what was awaited, not a traceback.
    assert shown.err.strip() == f"UsageError: %petri wait-halt: interrupted while waiting for {vm.name} to halt"
    assert "Traceback" not in shown.out + shown.err
    wait_until(lambda: "CancelledError" in " ".join(vm.timeline().query("kind == 'wait_for_halt()'")["detail"]),
               what="the cancelled wait on the timeline")
    shell.run_line_magic("petri", "send echo after-ctrl-c")
    assert shell.run_line_magic("petri", "expect after-ctrl-c") == "after-ctrl-c"
    assert vm.state == "running"
