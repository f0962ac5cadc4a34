"""The ``%petri`` subcommand table: one row per subcommand (arguments, help, handler).

Adding a subcommand is a row here and a function in handlers.py; the ``%petri?`` page
is generated from these rows, so the help cannot fall behind.
"""

from __future__ import annotations

import argparse

from ...errors import BadArgument
from ...vm.keyboard import char_events, parse_combo
from . import handlers as h
from .arguments import (
    READY_WORDS,
    Subcommand,
    arg,
    count,
    index,
    mebibytes,
    one_of,
    path,
    ready,
    regex,
    score,
    seconds,
    where,
)


def icount_or_end(text: str) -> str:
    """An instruction count (decimal or 0x hex) or ``end``, checked here, converted by the handler."""
    if text != "end":
        try:
            int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an instruction count or 'end', not {text!r}") from None
    return text


def key_combo(text: str) -> str:
    """A key combo in QEMU sendkey spelling, checked here so a typo fails before any VM is needed."""
    try:
        parse_combo(text)
    except BadArgument as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def typable(text: str) -> str:
    """Text a US keyboard can type."""
    try:
        char_events(text)
    except BadArgument as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


_SUPPRESS = argparse.SUPPRESS  # launch options: absent from args unless typed (see handlers.launch)

LAUNCH_ARGS = (
    arg("guest", nargs="?", default=None, metavar="GUEST",
        help="guest preset name (default: your own guest if --kernel, --disk or --cdrom is given, else tmk)"),
    arg("--kernel", type=path, default=_SUPPRESS, metavar="PATH", help="kernel to boot directly"),
    arg("--initrd", type=path, default=_SUPPRESS, metavar="PATH", help="initial ramdisk for --kernel"),
    arg("--append", default=_SUPPRESS, metavar="TEXT", help="kernel command line (quote it)"),
    arg("--disk", dest="disks", action="append", type=path, default=_SUPPRESS, metavar="PATH",
        help="disk image (repeatable; the image itself is not written)"),
    arg("--cdrom", type=path, default=_SUPPRESS, metavar="PATH", help="ISO image"),
    arg("--firmware", type=one_of("firmware", "bios", "qboot", "uefi", "uefi-secure"), default=_SUPPRESS,
        metavar="bios|qboot|uefi|uefi-secure", help="firmware"),
    arg("--firmware-vars", dest="firmware_vars", type=path, default=_SUPPRESS, metavar="PATH",
        help="UEFI variable store to start from (saved with vm.firmware_vars(); copied, never written)"),
    arg("--memory", dest="memory_mib", type=mebibytes, default=_SUPPRESS, metavar="MIB", help="guest memory in MiB"),
    arg("--cpus", type=count, default=_SUPPRESS, metavar="N", help="number of vCPUs"),
    arg("--tpm", action="store_true", default=_SUPPRESS, help="add a TPM 2.0"),
    arg("--agent", type=one_of("agent", "qga"), default=_SUPPRESS, metavar="qga",
        help="talk to the guest's qemu-guest-agent"),
    arg("--ready", type=ready, default=_SUPPRESS, metavar="REGEX|" + "|".join(READY_WORDS),
        help="when the guest is ready: console regex, agent answering, first boot event, or none"),
    arg("--ready-timeout", type=seconds, default=_SUPPRESS, metavar="S", help="seconds to wait for readiness"),
    arg("--cached", dest="boot_cache", action="store_true", default=_SUPPRESS,
        help="start from this guest's state when it was last ready (the boot cache), or store it now"),
    arg("--name", default=_SUPPRESS, metavar="N", help="VM name (default: GUEST-N)"),
    # Checked by the backend, which knows which accelerators it has (e.g. whether /dev/kvm is usable).
    arg("--accel", default=_SUPPRESS, metavar="tcg|kvm|auto", help="accelerator (default tcg)"),
)

#: The launch options notebooks rely on (issue 13), in the order people read them.
LAUNCH_SYNOPSIS = ("[GUEST] [--kernel PATH] [--initrd PATH] [--append TEXT] [--disk PATH]... [--cdrom PATH] "
                   "[--firmware bios|qboot|uefi|uefi-secure] [--firmware-vars PATH] [--memory MIB] [--cpus N] [--tpm] "
                   "[--agent qga] "
                   "[--ready REGEX|agent|boot|none] [--ready-timeout S] [--cached] [--name N] [--accel tcg|kvm|auto]")

SUBCOMMANDS: dict[str, Subcommand] = {s.name: s for s in (
    Subcommand("launch", "Boot GUEST (default tmk, or your own files), make it the current VM and show it.",
               h.launch, LAUNCH_ARGS, needs_vm=False, synopsis=LAUNCH_SYNOPSIS),
    Subcommand("use", "Make the running VM called NAME the current one.", h.use,
               (arg("name", help="VM name, see %%petri ls"),), needs_vm=False),
    Subcommand("ls", "List the running VMs as a DataFrame.", h.ls, needs_vm=False),
    Subcommand("reset", "Reset the VM (also restarts a halted one); returns once the guest is ready again.",
               h.reset, (arg("--no-wait", action="store_true", help="return at once, not when the guest is ready"),)),
    Subcommand("pause", "Pause the guest's CPUs.", h.pause),
    Subcommand("resume", "Resume the guest's CPUs.", h.resume),
    Subcommand("wait-halt", "Wait for the next halt and return it.", h.wait_halt, (
        arg("--allow-reset", action="store_true", help="restart the VM on guest resets and keep waiting"),
        arg("--timeout", type=seconds, default=None, help="give up after this many seconds"),
    )),
    Subcommand("shutdown", "Ask the guest to power off (or reboot) cooperatively.", h.shutdown,
               (arg("--reboot", action="store_true", help="reboot instead of powering off"),)),
    Subcommand("screenshot", "The screen as a PIL image.", h.screenshot),
    Subcommand("screen-text", "The text on the screen: the VGA text buffer in text modes, OCR in graphics modes.",
               h.screen_text),
    Subcommand("wait-screen", "Wait until the screen shows REGEX, has changed and/or stayed still; show that screen.",
               h.wait_screen, (
                   arg("--text", type=regex, default=None, metavar="REGEX", help="text to wait for (single-quote it)"),
                   arg("--changed", action="store_true", help="wait for the screen to differ from how it is now"),
                   arg("--still", type=seconds, default=None, metavar="S", help="unchanged for S seconds"),
                   arg("--like", type=path, default=None, metavar="NEEDLE", help="a needle's .json to match"),
                   arg("--timeout", type=seconds, default=60.0, help="seconds to wait (default 60)"),
               )),
    Subcommand("type", "Type TEXT on the VM's keyboard (US layout); --enter presses Enter after it.", h.type_, (
        arg("--enter", action="store_true", help="press Enter after the text"),
        arg("text", nargs="+", type=typable, help="text (words are joined with single spaces; quote to keep spacing)"),
    )),
    Subcommand("key", "Press each COMBO in turn, in QEMU sendkey spelling (ret, f2, ctrl-alt-delete).", h.key, (
        arg("combos", nargs="+", type=key_combo, metavar="COMBO", help="key combo, e.g. ctrl-alt-delete"),
        arg("--hold", type=seconds, default=0.0, metavar="S", help="hold each combo down for S seconds"),
    )),
    Subcommand("needle", "Cut a needle NAME of the region X Y W H (pixels) from the live screen and save it "
               "as NAME.png + NAME.json in DIR.", h.needle, (
                   arg("name", help="needle name (letters, digits, _ . + -)"),
                   arg("x", type=index, help="left edge"), arg("y", type=index, help="top edge"),
                   arg("w", type=count, help="width"), arg("h", type=count, help="height"),
                   arg("--dir", type=path, default="needles", metavar="DIR", help="folder (default ./needles)"),
                   arg("--threshold", type=score, default=0.95, metavar="T", help="lowest match score (default 0.95)"),
               )),
    Subcommand("inspect", "The VM's inspect tree (only the branch at PATH) as a DataFrame.", h.inspect,
               (arg("path", nargs="?", default=None, help="path prefix, e.g. vcpu/0"),)),
    Subcommand("timeline", "This VM's event timeline as a DataFrame.", h.timeline),
    Subcommand("save", f"Save the VM state in memory for restore (the checkpoint named {h.SAVED!r}).", h.save),
    Subcommand("restore", "Restore the state last saved with save.", h.restore),
    Subcommand("console", "The serial console text (plain text).", h.console,
               (arg("--tail", type=count, default=None, help="only the last N lines"),)),
    Subcommand("send", "Write TEXT and a newline to the serial console.", h.send,
               (arg("text", nargs="+", help="text (words are joined with single spaces)"),)),
    Subcommand("expect", "Wait for console output matching REGEX (single-quote it) and return the match.",
               h.expect, (
                   arg("regex", type=regex, help="Python regular expression"),
                   arg("--timeout", type=seconds, default=30.0, help="seconds to wait (default 30)"),
               )),
    Subcommand("run", "Run CMD with the guest's /bin/sh through the guest agent (Linux guest); show its output and "
               "exit code. In %%petri, a first line `run [--timeout S]` makes the rest of the cell one script.",
               h.run, (
                   arg("--timeout", type=seconds, default=60.0, help="kill the command after S seconds (default 60)"),
                   arg("command", nargs=argparse.REMAINDER, help="shell command (the rest of the line, as typed)"),
               )),
    Subcommand("regs", "Registers (of vCPU N, only NAMEs if given) as a DataFrame.", h.regs, (
        arg("--cpu", type=index, default=None, help="vCPU index (default: all)"),
        arg("names", nargs="*", metavar="NAME", help="register names, e.g. EIP CR0 CS.base"),
    )),
    Subcommand("x", "Hexdump LEN bytes of guest memory at ADDR (virtual unless --phys).", h.x, (
        arg("addr", type=where, metavar="ADDR", help="address (0x..., decimal) or kernel symbol"),
        arg("length", type=count, nargs="?", default=64, metavar="LEN", help="bytes (default 64)"),
        arg("--phys", action="store_true", help="ADDR is a guest-physical address"),
    )),
    Subcommand("dis", "Disassemble COUNT instructions at ADDR or SYMBOL (default: the current one) as a DataFrame.",
               h.dis, (
                   arg("addr", type=where, nargs="?", default=None, metavar="ADDR", help="address or symbol"),
                   arg("-n", dest="count", type=count, default=20, metavar="COUNT", help="instructions (default 20)"),
               )),
    Subcommand("break", "Set a breakpoint at ADDR or SYMBOL (or remove it with --delete).", h.break_, (
        arg("addr", type=where, metavar="ADDR", help="address or symbol"),
        arg("--delete", action="store_true", help="remove the breakpoint instead"),
    )),
    Subcommand("step", "Execute one instruction of the stopped guest; show the new program counter.", h.step),
    Subcommand("continue", "Let a guest stopped at a breakpoint (or paused) run again.", h.continue_),
    Subcommand("record", "Boot GUEST recording it for replay (TCG, one vCPU); options as for launch.", h.record,
               LAUNCH_ARGS, needs_vm=False, synopsis=LAUNCH_SYNOPSIS),
    Subcommand("replay", "Replay the current recorded VM (ending its recording) or the recording in PATH, paused.",
               h.replay, (arg("path", type=path, nargs="?", default=None, help="a recording directory"),),
               needs_vm=False),
    Subcommand("rstep", "Step the replay one instruction backwards.", h.rstep),
    Subcommand("rcontinue", "Run the replay backwards to the previous breakpoint.", h.rcontinue),
    Subcommand("seek", "Go to instruction count ICOUNT (or `end`) in the replay.", h.seek,
               (arg("icount", type=icount_or_end, metavar="ICOUNT|end", help="instruction count or end"),)),
    Subcommand("checkpoint", "Keep the VM state in memory under NAME (default cp-N).", h.checkpoint,
               (arg("name", nargs="?", default=None, help="checkpoint name"),)),
    Subcommand("rewind", "Go back to checkpoint NAME (default: the latest).", h.rewind,
               (arg("name", nargs="?", default=None, help="checkpoint name"),)),
    Subcommand("checkpoints", "The checkpoints taken so far as a DataFrame.", h.checkpoints),
    Subcommand("fleet", "Run a built-in EXPERIMENT on N fresh VMs on a Dask cluster; the outcomes as a DataFrame.",
               h.fleet, (
                   arg("experiment", help="built-in experiment name, e.g. halt-each"),
                   arg("-n", dest="runs", type=count, required=True, metavar="N", help="number of runs"),
                   arg("--rundir", default=None, metavar="DIR", help="where timelines and outcomes go"),
               ), needs_vm=False, exclusive=((
                   arg("--workers", type=count, default=None, metavar="W", help="local cluster of W workers"),
                   arg("--address", default=None, metavar="ADDR", help="existing Dask scheduler address"),
               ),)),
    Subcommand("teardown", "Stop the current VM (or all of them) and free everything.", h.teardown,
               (arg("--all", action="store_true", help="tear down every running VM"),), needs_vm=False),
)}


def help_epilog() -> str:
    """The subcommand list and the rules that hold for all of them, for ``%petri?``."""
    lines = ["subcommands:"]
    for sub in SUBCOMMANDS.values():
        lines.append(f"  {sub.usage()}")
        lines.append(f"      {sub.help}")
    lines += [
        "",
        "Subcommands act on the current VM: the last one launched or chosen with `use`.",
        "`%petri help` (or -h, --help) shows this text. %%petri runs one subcommand per line and",
        "stops at the first failure; blank lines and lines starting with # are skipped. Errors,",
        "and Ctrl-C during a wait, are reported as one-line UsageErrors.",
        "",
        "Exception: when the first line of a %%petri cell (or the %%petri line itself) is",
        "`run [--timeout S]`, the rest of the cell is one shell script run in the guest:",
        "    %%petri run --timeout 30",
        "    cd /tmp",
        "    ls -l | head",
        "ADDR is hex (0x...), decimal or a kernel symbol name (tmk has symbols).",
    ]
    return "\n".join(lines)
