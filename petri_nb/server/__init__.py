"""petri_nb's Jupyter server extension: the live view's side channel beside the kernel.

Routes (under the server's base URL, behind Jupyter's auth):
``petri_nb/view/<id>/vnc`` bridges noVNC to the VM's VNC unix socket, and
``petri_nb/view/<id>/control`` runs the view's buttons over its control QMP socket,
``petri_nb/view/<id>/serial`` bridges the serial pane to the runtime's serial tap,
where ``<id>`` is the VM's run directory name (checked by ``rundirs.resolve``).
``petri_nb/view/ping`` lets the browser find out whether the extension is there.
Enabled on install by ``jupyter-config/jupyter_server_config.d/petri_nb.json``.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from .bridge import SerialHandler, VncHandler
from .control import ControlHandler

#: The browser checks this to pick the side channel (and says which path it uses).
PROTOCOL = 1


class PingHandler(APIHandler):
    """Answers only an authenticated user: the view uses the side channel only where this works."""

    @web.authenticated
    def get(self) -> None:
        self.finish(json.dumps({"petri_nb_view": PROTOCOL}))


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "petri_nb.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    web_app = serverapp.web_app
    base = url_path_join(web_app.settings["base_url"], "petri_nb", "view")
    view_id = r"([^/]+)"  # any one segment: rundirs.resolve decides, with a logged reason
    web_app.add_handlers(".*$", [
        (url_path_join(base, "ping"), PingHandler),
        (url_path_join(base, view_id, "vnc"), VncHandler),
        (url_path_join(base, view_id, "control"), ControlHandler),
        (url_path_join(base, view_id, "serial"), SerialHandler),
    ])
    serverapp.log.info("petri_nb view server: %s", base)
