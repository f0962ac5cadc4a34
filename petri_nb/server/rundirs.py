"""Which unix sockets the view server may open: only this user's petri_nb run directories.

The browser names a VM by its run directory's name (``petri_nb-NAME-XXXX``, made by
``tempfile.mkdtemp`` in the backend), never by a path. A name is accepted only if it
is one plain path component under the temp dir, the directory is a real directory (not
a symlink) owned by this user with mode 0700, and the socket in it is a real socket owned
by this user. Anything else is refused, with one reason, before any socket is opened.

The directory is opened once (``O_NOFOLLOW``) and every check and every later connection
goes through that one fd, so renaming or swapping the name for a symlink after the check
changes nothing: there is no second lookup of the name to race with.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path

from ..backends.view import VIEW_SOCKETS

#: One path component as ``tempfile.mkdtemp(prefix="petri_nb-NAME-")`` makes it (a VM name is any
#: text). What keeps other files out is the checks below, not this pattern.
VIEW_ID = re.compile(r"petri_nb-[^/\x00]{1,240}")


class Refused(Exception):
    """The request names no socket this user's view server may open."""


def roots() -> list[Path]:
    """Where run dirs live: the temp dir, as the kernel's ``mkdtemp`` chose it (same user, same env)."""
    return [Path(os.path.realpath(tempfile.gettempdir()))]


class ViewSocket:
    """A checked view socket, reached through its run directory's open fd (close it when done)."""

    def __init__(self, dirfd: int, rundir: Path, name: str) -> None:
        self._fd, self.rundir, self.name = dirfd, rundir, name

    @property
    def dir(self) -> Path:
        """The checked directory itself, whatever its name names now (short: fits AF_UNIX paths)."""
        return Path(f"/proc/self/fd/{self._fd}")

    @property
    def path(self) -> str:
        """Where to connect: the socket in the checked directory."""
        return str(self.dir / self.name)

    def exists(self) -> bool:
        return not self.closed and os.path.exists(self.path)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ViewSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve(view_id: str, kind: str, *, bases: list[Path] | None = None) -> ViewSocket:
    """The socket of kind ``kind`` ("vnc", "control", "serial") for ``view_id``, or raise Refused."""
    if kind not in VIEW_SOCKETS:
        raise Refused(f"unknown socket kind {kind!r}")
    if not isinstance(view_id, str) or not VIEW_ID.fullmatch(view_id) or view_id in (".", ".."):
        raise Refused("not a petri_nb run directory name")
    for base in bases if bases is not None else roots():
        try:
            fd = os.open(base / view_id, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError:  # ELOOP or ENOTDIR: a symlink (not followed, even to a good dir) or a file
            raise Refused("the run directory is not a plain directory of this user") from None
        try:
            _check(fd, VIEW_SOCKETS[kind])
        except BaseException:
            os.close(fd)
            raise
        return ViewSocket(fd, base / view_id, VIEW_SOCKETS[kind])
    raise Refused("no such run directory")


def _check(dirfd: int, name: str) -> None:
    uid = os.getuid()
    st = os.fstat(dirfd)
    if st.st_uid != uid or stat.S_IMODE(st.st_mode) != 0o700:
        raise Refused("the run directory is not private to this user (owner and mode 0700)")
    try:
        sst = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except OSError:
        raise Refused("the VM has no such socket (torn down, or launched without a view)") from None
    if not stat.S_ISSOCK(sst.st_mode) or sst.st_uid != uid:
        raise Refused("not a socket of this user")
