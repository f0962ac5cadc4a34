"""The side channel a VM's live view uses beside the kernel: VNC and a second QMP monitor.

Both are unix sockets inside the VM's private 0700 run directory, so only this user can
reach them; the Jupyter server extension (``petri_nb.server``) bridges them to the browser
behind Jupyter's auth. Never ``websocket=on``: QEMU 7.2 then also listens on TCP port 5700
on every interface.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..view import VIEW_SOCKETS

#: The view's sockets that QEMU itself serves (and so unlinks when it quits).
QEMU_VIEW_SOCKETS = (VIEW_SOCKETS["vnc"], VIEW_SOCKETS["control"])


def display_args(rundir: Path) -> list[str]:
    """QEMU argv serving the display on a VNC unix socket and a QMP monitor for the view's buttons.

    QMP events reach every monitor, so the kernel's own QMP session still sees (and records)
    everything the view's buttons cause."""
    return [
        "-vnc", f"unix:{rundir / VIEW_SOCKETS['vnc']}",
        "-qmp", f"unix:{rundir / VIEW_SOCKETS['control']},server=on,wait=off",
    ]


@contextlib.contextmanager
def sockets_kept(rundir: Path | None, names: tuple[str, ...]) -> Iterator[None]:
    """Keep the names of the sockets QEMU serves across a QEMU swap (restore, relaunch).

    The replacement QEMU binds the same paths first; the old one, quitting inside this
    block, unlinks its sockets' paths even though they now name the new QEMU's sockets.
    A hard link made before (unix sockets are found by inode) puts each name back after."""
    kept: dict[Path, Path] = {}
    for name in names if rundir is not None else ():
        path = rundir / name
        spare = path.with_name(path.name + ".keep")
        with contextlib.suppress(OSError):
            os.link(path, spare)
            kept[path] = spare
    try:
        yield
    finally:
        for path, spare in kept.items():
            with contextlib.suppress(OSError):
                os.replace(spare, path)
