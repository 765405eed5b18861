"""The desktop's server extensions load in every Jupyter server, before it answers the hub: they
must not import the desktop's own modules (WebRTC, video, X), which took 0.4 s of each start."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("aiortc", "av", "cv2", "numpy", "Xlib", "desktop_proxy.server", "desktop_proxy.windows")


def test_the_server_extensions_import_none_of_the_desktops_modules():
    code = ("import json, sys; import desktop_proxy.lab_api, desktop_proxy.idle_watch; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == []
