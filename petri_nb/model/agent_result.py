"""What a guest agent command produced, whichever agent ran it."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AgentError

#: Most output (stdout + stderr, or a file's bytes) one agent call keeps; more stops the command.
MAX_OUTPUT = 64 << 20


@dataclass(frozen=True)
class AgentResult:
    """What a guest command produced."""

    command: str
    exit_code: int
    stdout: bytes
    stderr: bytes
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def text(self) -> str:
        """stdout decoded for display (undecodable bytes replaced)."""
        return self.stdout.decode(errors="replace")

    def check(self) -> AgentResult:
        """Raise AgentError unless the command exited 0."""
        if self.exit_code != 0:
            raise AgentError(f"guest command {self.command!r} exited {self.exit_code}: "
                             f"{self.stderr.decode(errors='replace').strip()[-500:]}")
        return self


def check_guest_path(path: object) -> None:
    """A guest path both agents can take: a non-empty string without NUL bytes."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise AgentError(f"guest path must be a non-empty string without NUL bytes, not {path!r}")
