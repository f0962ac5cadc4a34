"""%petri record / replay / seek / rstep / rcontinue on tmk (real QEMU)."""

from __future__ import annotations

import shutil

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell


def test_record_replay_seek_and_step_back_from_the_magics(shell: InteractiveShell) -> None:
    vm = shell.run_line_magic("petri", "record tmk --name rec")
    path = vm.recording
    try:
        shell.run_line_magic("petri", "send triplefault")
        assert shell.run_line_magic("petri", "wait-halt --timeout 30").reason.name == "TRIPLE_FAULT"
        replay = shell.run_line_magic("petri", "replay")
        assert replay.icount() == 0
        assert "cmd_triplefault" in str(shell.run_line_magic("petri", "seek end"))
        text = str(shell.run_line_magic("petri", "rstep"))
        assert "cmd_triplefault" in text and f"instruction {replay.icount()}" in text
        with pytest.raises(UsageError, match="rcontinue: unrecognized arguments"):
            shell.run_line_magic("petri", "rcontinue now")  # running it: test_timetravel (slow, see there)
        assert str(shell.run_line_magic("petri", "seek 0x10")).startswith("at instruction 16")
        with pytest.raises(UsageError, match="instruction count or 'end'"):
            shell.run_line_magic("petri", "seek later")
    finally:
        shutil.rmtree(path, ignore_errors=True)
