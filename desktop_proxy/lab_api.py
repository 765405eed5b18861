"""The image's GUI applications for JupyterLab's launcher (a Jupyter server extension).

``GET <base_url>hepsdesk/apps`` lists the applications of ``$HEPSDESK_IMAGE_INFO`` and
``GET <base_url>hepsdesk/apps/<name>/icon`` serves one's icon, both in the Jupyter server
itself: the launcher shows a tile per application without starting the desktop. A tile's
click starts the application through the desktop's own API (``desktop/api/apps/<name>/open``,
``control.py``), which starts the desktop first if it is not running.
"""

from __future__ import annotations

import os

from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from .apps import ImageApps, NoIcon, UnknownApp, read_icon, send_icon


class AppsHandler(APIHandler):
    def initialize(self, apps: ImageApps):
        self.apps = apps

    @web.authenticated
    def get(self):
        listing = self.apps.as_dict()
        for app in listing["applications"]:
            app.pop("command", None)  # the browser needs names and titles, not paths
        self.finish(listing)


class IconHandler(JupyterHandler):
    def initialize(self, apps: ImageApps):
        self.apps = apps

    @web.authenticated
    def get(self, name: str):
        try:
            kind, data = read_icon(self.apps.get(name))
        except (UnknownApp, NoIcon):
            raise web.HTTPError(404) from None
        send_icon(self, kind, data)


def _load_jupyter_server_extension(serverapp) -> None:
    apps = ImageApps.load(os.environ.get("HEPSDESK_IMAGE_INFO"))
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [
        (url_path_join(base, "hepsdesk", "apps"), AppsHandler, {"apps": apps}),
        (url_path_join(base, "hepsdesk", "apps", r"([A-Za-z0-9][A-Za-z0-9._-]{0,63})", "icon"), IconHandler,
         {"apps": apps}),
    ])
    serverapp.log.info("hepsdesk: %d desktop applications for the launcher (%s)", len(apps.applications),
                       apps.image or "no image information")
