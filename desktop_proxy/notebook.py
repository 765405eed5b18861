"""The desktop from a notebook: open the image's applications on it, wait for their windows,
take screenshots, and show the desktop beside the notebook.

    from desktop_proxy.notebook import desktop
    desktop.apps()                                  # what this image has
    viewer = desktop.open("sasview", "run42.dat")   # files relative to the notebook's directory
    viewer.wait_window()                            # its window, once it is on the desktop
    desktop.screenshot(viewer)                      # a picture of it, shown in the notebook
    desktop.show()                                  # the desktop itself, in the notebook
    desktop.send_file("results/fit.png")            # downloads in the browser that shows the desktop

It talks to the desktop server over the user's private control socket (``control_socket.py``),
starting the desktop through the Jupyter server when it is not running. Standard library
only (and IPython when there is one): kernels have none of the desktop's packages.
"""

from __future__ import annotations

import html
import http.client
import json
import os
import socket
import struct
import time
import urllib.error
import urllib.parse
import urllib.request

from .control_socket import ENVIRONMENT, UnsafeDirectory, check_private_dir, control_socket_path

START_TIMEOUT = 60  # seconds for a desktop to start
CALL_TIMEOUT = 30


class DesktopError(Exception):
    """Something the desktop could not do; ``kind`` and ``details`` are what it answered."""

    def __init__(self, message: str, kind: str = "", details: dict | None = None):
        super().__init__(message)
        self.kind = kind
        self.details = details or {}


class NoDesktop(DesktopError):
    pass


class UnknownApp(DesktopError):
    @property
    def known(self) -> list[str]:
        return self.details.get("known", [])


class FileProblem(DesktopError):
    pass


class AppExited(DesktopError):
    @property
    def returncode(self) -> int | None:
        return self.details.get("returncode")

    @property
    def output(self) -> str:
        return self.details.get("output", "")


class WindowTimeout(DesktopError):
    pass


ERRORS = {"no-desktop": NoDesktop, "unknown-app": UnknownApp, "file-problem": FileProblem,
          "app-exited": AppExited, "window-timeout": WindowTimeout}


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket."""

    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        try:
            self.sock.connect(self.path)
        except OSError:
            self.sock.close()
            self.sock = None
            raise


class Screenshot:
    """A PNG picture of the desktop or of a window; shown inline in Jupyter."""

    def __init__(self, data: bytes):
        self.data = data
        self.width, self.height = struct.unpack(">II", data[16:24])  # from the PNG's IHDR

    def _repr_png_(self) -> bytes:
        return self.data

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "wb") as f:
            f.write(self.data)

    def __repr__(self) -> str:
        return f"<Screenshot {self.width}x{self.height} PNG, {len(self.data)} bytes>"


class DesktopFrame:
    """The desktop page, in an iframe, for a notebook's output."""

    def __init__(self, url: str, height: int):
        self.url, self.height = url, height

    def _repr_html_(self) -> str:
        return (f'<iframe src="{html.escape(self.url)}" style="width: 100%; height: {int(self.height)}px; '
                'border: 1px solid #ccc" allow="clipboard-read; clipboard-write; fullscreen"></iframe>')

    def __repr__(self) -> str:
        return f"<the desktop, at {self.url}>"


class AppHandle:
    """An application started on the desktop (one launch of it)."""

    def __init__(self, desktop: Desktop, launch: dict):
        self.desktop = desktop
        self.id, self.app, self.pid = launch["id"], launch["app"], launch["pid"]
        self.title = launch.get("title", self.app)

    def wait_window(self, timeout: float = 60, abort: bool = False) -> dict:
        """Wait until its window is on the desktop and drawn, and return it. Raises ``AppExited`` when it
        ends first, ``WindowTimeout`` after ``timeout`` seconds (and, with ``abort``, stops it)."""
        return self.desktop._call("POST", f"/api/launches/{self.id}/wait-window",
                                  {"timeout": timeout, "abort": abort}, timeout=timeout + CALL_TIMEOUT)

    def info(self) -> dict:
        """Its state ("running" or "exited"), exit status, last output and windows."""
        return self.desktop._call("GET", f"/api/launches/{self.id}")

    def windows(self) -> list[dict]:
        return self.info()["windows"]

    def screenshot(self) -> Screenshot:
        return self.desktop.screenshot(self)

    def close(self) -> dict:
        """Stop it (and whatever it started); its final state."""
        return self.desktop._call("DELETE", f"/api/launches/{self.id}")

    def __repr__(self) -> str:
        return f"<{self.title} on the desktop (launch {self.id}, pid {self.pid})>"


class Desktop:
    """The user's desktop, as a notebook sees it."""

    def __init__(self, socket_path: str | None = None):
        self._socket_path = socket_path

    @property
    def socket_path(self) -> str:
        return self._socket_path or control_socket_path()

    @property
    def url(self) -> str:
        """The desktop page's address (for the browser)."""
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/").rstrip("/") + "/desktop/"

    def apps(self) -> list[dict]:
        """The image's applications: name, title, version, the file name extensions they open."""
        return self._call("GET", "/api/apps")["applications"]

    def info(self) -> dict:
        """The image's name, title, applications and sample data."""
        return self._call("GET", "/api/apps")

    def open(self, app: str | dict, *files: str | os.PathLike) -> AppHandle:
        """Start ``app`` (a name from ``apps()``) with ``files`` (relative to the current
        directory, or absolute); ``wait_window()`` on the result waits for its window."""
        name = app["name"] if isinstance(app, dict) else app
        paths = [os.path.abspath(os.path.expanduser(os.fspath(f))) for f in files]
        launch = self._call("POST", f"/api/apps/{urllib.parse.quote(str(name), safe='')}/open", {"files": paths})
        return AppHandle(self, launch)

    def launches(self) -> list[dict]:
        return self._call("GET", "/api/launches")["launches"]

    def windows(self) -> list[dict]:
        """The desktop's windows: id, title, pid, x, y, width, height, launch."""
        return self._call("GET", "/api/windows")["windows"]

    def screenshot(self, window: dict | int | AppHandle | None = None) -> Screenshot:
        """A picture of the whole desktop, or of a window (a dict from ``windows()``, its id, or
        an application opened with ``open``: its first window)."""
        query = ""
        if isinstance(window, AppHandle):
            windows = window.windows()
            if not windows:
                raise DesktopError(f"{window.title} has no window on the desktop (yet: try wait_window())")
            window = windows[0]
        if isinstance(window, dict):
            window = window["id"]
        if window is not None:
            query = f"?window={int(window)}"
        return Screenshot(self._request("GET", f"/api/screenshot{query}", expect="image/png"))

    def send_file(self, path: str | os.PathLike) -> dict:
        """Send a file (in the home or a data directory) to the browser that shows the desktop:
        it downloads there. The offer, with ``pages``: how many pages were told (0: it waits,
        a few minutes, for the desktop to be opened)."""
        return self._call("POST", "/api/files/offers", {"path": os.path.abspath(path)})

    def show(self, height: int = 600):
        """Show the desktop in the notebook, beside the cells."""
        frame = DesktopFrame(self.url, height)
        try:
            from IPython.display import display
        except ImportError:
            return frame
        display(frame)

    # The requests.

    def _call(self, method: str, path: str, body: dict | None = None, timeout: float = CALL_TIMEOUT):
        return json.loads(self._request(method, path, body, timeout))

    def _request(self, method: str, path: str, body: dict | None = None, timeout: float = CALL_TIMEOUT,
                 expect: str = "application/json") -> bytes:
        try:
            try:
                status, kind, data = self._send(method, path, body, timeout)
            except (FileNotFoundError, ConnectionRefusedError):
                self._start()
                status, kind, data = self._send(method, path, body, timeout)
        except TimeoutError:
            raise DesktopError(f"the desktop did not answer within {timeout:g} s") from None
        except (OSError, http.client.HTTPException) as e:
            raise DesktopError(f"cannot talk to the desktop on {self.socket_path}: {e}") from None
        if status >= 400 or not kind.startswith(expect):
            raise _error(status, kind, data)
        return data

    def _send(self, method: str, path: str, body: dict | None, timeout: float) -> tuple[int, str, bytes]:
        where = self.socket_path
        if not self._socket_path and not os.environ.get(ENVIRONMENT):
            try:
                check_private_dir(os.path.dirname(where))
            except FileNotFoundError:
                raise
            except (OSError, UnsafeDirectory) as e:
                raise DesktopError(f"the desktop's control socket is not safe to use: {e}") from None
        connection = UnixHTTPConnection(where, timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            connection.request(method, path, payload, headers)
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            connection.close()

    def _start(self) -> None:
        """Have the Jupyter server start the desktop (jupyter-server-proxy starts it on its first
        request), then wait for its control socket."""
        server = os.environ.get("JUPYTERHUB_SERVICE_URL") or os.environ.get("JUPYTER_SERVER_URL")
        token = os.environ.get("JUPYTERHUB_API_TOKEN")
        if not server or not token:
            raise NoDesktop(f"no desktop is running (nothing answers on {self.socket_path}): open the Desktop "
                            "tile in the JupyterLab launcher, or run this notebook in a hepsdesk session") from None
        url = server.rstrip("/") + "/desktop/api/apps"
        request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
        deadline = time.monotonic() + START_TIMEOUT
        try:
            with urllib.request.urlopen(request, timeout=START_TIMEOUT):
                pass
        except urllib.error.HTTPError as e:
            raise _error(e.code, e.headers.get("Content-Type", ""), e.read(), starting=True) from None
        except (OSError, ValueError) as e:
            raise NoDesktop(f"no desktop is running, and the Jupyter server ({server}) could not start one: "
                            f"{getattr(e, 'reason', e)}. Open the Desktop tile in the JupyterLab launcher") from None
        while time.monotonic() < deadline:
            try:
                self._send("GET", "/api/apps", None, 5)
                return
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.25)
        raise NoDesktop(f"the desktop started, but its control socket {self.socket_path} did not appear within "
                        f"{START_TIMEOUT} s; is $XDG_RUNTIME_DIR or ${ENVIRONMENT} the same for the desktop and "
                        "this kernel?") from None


def _error(status: int, kind: str, data: bytes, starting: bool = False) -> DesktopError:
    """The exception for an error answer."""
    try:
        answer = json.loads(data) if kind.startswith("application/json") else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or "error" not in answer:
        text = data[:200].decode(errors="replace").strip()
        if starting:
            return NoDesktop(f"no desktop is running, and the Jupyter server could not start one "
                             f"(HTTP {status}: {text}). Open the Desktop tile in the JupyterLab launcher")
        return DesktopError(f"the desktop answered HTTP {status}: {text}")
    details = {k: v for k, v in answer.items() if k not in ("error", "message")}
    cls = ERRORS.get(answer["error"], DesktopError)
    return cls(str(answer.get("message", answer["error"])), answer["error"], details)


desktop = Desktop()
