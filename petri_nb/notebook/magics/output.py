"""What subcommands return: guest text as plain text, command results, the checkpoint table.

Guest output is untrusted: it is returned as ``PlainText`` (no HTML repr, terminal control
characters replaced) so a guest cannot restyle or script the notebook.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from ...vm.agent import AgentResult
from ...vm.save_restore import Checkpoint

#: Control characters a terminal or notebook would interpret (ANSI escapes, bells,
#: carriage returns); guest text is shown with them replaced.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class PlainText(str):
    """Text shown as plain text, for untrusted guest text: no HTML repr, control characters replaced."""

    def __new__(cls, text: str) -> PlainText:
        return super().__new__(cls, _CONTROL.sub("\ufffd", text.replace("\r\n", "\n")))

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


class RunOutput(PlainText):
    """A guest command's exit code, stdout and stderr as plain text; ``.result`` is the AgentResult."""

    result: AgentResult

    def __new__(cls, result: AgentResult) -> RunOutput:
        parts = [f"exit code {result.exit_code}" + ("" if result.ok else " (failed)")
                 + f" after {result.duration_s:.2f} s"]
        for name, data in (("stdout", result.stdout), ("stderr", result.stderr)):
            if data:
                parts.append(f"--- {name} ---\n" + data.decode(errors="replace").rstrip("\n"))
        obj = super().__new__(cls, "\n".join(parts))
        obj.result = result
        return obj

    @property
    def exit_code(self) -> int:
        return self.result.exit_code

    @property
    def ok(self) -> bool:
        return self.result.ok


def checkpoints_frame(checkpoints: list[Checkpoint]) -> pd.DataFrame:
    """One row per checkpoint, oldest first, with typed columns (empty too, for a stable schema)."""
    return pd.DataFrame({
        "name": pd.array([cp.name for cp in checkpoints], dtype="string"),
        "uptime_s": pd.array([cp.t for cp in checkpoints], dtype="float64"),
        "bytes": pd.array([cp.size for cp in checkpoints], dtype="int64"),
        "save_s": pd.array([cp.save_s for cp in checkpoints], dtype="float64"),
    })
