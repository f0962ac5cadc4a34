"""Which unix sockets the view server may open: only this user's petri_nb run directories.

The browser names a VM by its run directory's name (``petri_nb-NAME-XXXX``, made by
``tempfile.mkdtemp`` in the backend), never by a path. A name is accepted only if it
is one plain path component under the temp dir, the directory is a real directory (not
a symlink) owned by this user with mode 0700, and the socket in it is a real socket owned
by this user. Anything else is refused, with one reason, before any socket is opened.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path

from ..backends.qemu.display import VIEW_SOCKETS

#: One path component as ``tempfile.mkdtemp(prefix="petri_nb-NAME-")`` makes it (a VM name is any
#: text). What keeps other files out is the checks below, not this pattern.
VIEW_ID = re.compile(r"petri_nb-[^/\x00]{1,240}")


class Refused(Exception):
    """The request names no socket this user's view server may open."""


def roots() -> list[Path]:
    """Where run dirs live: the temp dir, as the kernel's ``mkdtemp`` chose it (same user, same env)."""
    return [Path(os.path.realpath(tempfile.gettempdir()))]


def resolve(view_id: str, kind: str, *, bases: list[Path] | None = None) -> Path:
    """The socket path of kind ``kind`` ("vnc", "control") for ``view_id``, or raise Refused."""
    if kind not in VIEW_SOCKETS:
        raise Refused(f"unknown socket kind {kind!r}")
    if not isinstance(view_id, str) or not VIEW_ID.fullmatch(view_id) or view_id in (".", ".."):
        raise Refused("not a petri_nb run directory name")
    uid = os.getuid()
    for base in bases if bases is not None else roots():
        rundir = base / view_id
        try:
            st = os.lstat(rundir)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):  # a symlink is not followed, even to a good dir
            raise Refused("the run directory is not a plain directory")
        if st.st_uid != uid or stat.S_IMODE(st.st_mode) != 0o700:
            raise Refused("the run directory is not private to this user (owner and mode 0700)")
        if os.path.realpath(rundir) != str(rundir):
            raise Refused("the run directory resolves elsewhere")
        sock = rundir / VIEW_SOCKETS[kind]
        try:
            sst = os.lstat(sock)
        except OSError:
            raise Refused("the VM has no such socket (torn down, or launched without a view)") from None
        if not stat.S_ISSOCK(sst.st_mode) or sst.st_uid != uid:
            raise Refused("not a socket of this user")
        return sock
    raise Refused("no such run directory")
