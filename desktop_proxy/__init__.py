"""The hepsdesk desktop: a WebRTC remote desktop of the VM, behind jupyter-server-proxy.

``setup_desktop`` is the ``jupyter_serverproxy_servers`` entry point: it puts a "Desktop"
tile on the JupyterLab launcher, beside the notebooks, that opens ``/user/<name>/desktop/``.
The server extension ``lab_api`` gives the lab extension the image's applications, a tile each.
This module imports nothing beyond the standard library: the notebook client
(``desktop_proxy.notebook``) is imported in kernels that have none of the desktop's packages.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent


def _jupyter_server_extension_points() -> list[dict]:
    """The server extensions: the image's applications for the launcher (``lab_api``); the idle
    deadline, and only a person's use counting as activity (``idle_watch``)."""
    return [{"module": "desktop_proxy.lab_api"}, {"module": "desktop_proxy.idle_watch"}]


def setup_desktop() -> dict:
    """The jupyter-server-proxy entry for the desktop server."""
    return {
        "command": [sys.executable, "-m", "desktop_proxy", "--unix-socket", "{unix_socket}"],
        "unix_socket": True,
        # Xvfb and the window manager start in well under a second; 60 s covers a busy VM.
        "timeout": 60,
        "new_browser_window": True,
        # The desktop's traffic (video statistics, pings) is not a person's activity: its input
        # is, and the desktop server reports that to the hub itself (``activity.py``).
        "update_last_activity": False,
        "launcher_entry": {
            "title": "Desktop",
            "icon_path": str(HERE / "static" / "desktop-icon.svg"),
            "category": "Notebook",
        },
    }
