"""The desktop's control API: open the image's applications, wait for their windows, list the
windows, take screenshots. For notebooks (``desktop_proxy.notebook``) and the browser.

Served under ``/api/`` beside the desktop page (behind jupyter-server-proxy, so JupyterHub's
authentication guards it), and alone on the user's private control socket (``ControlSocket``,
``control_socket.py``), which notebooks reach without going through the Jupyter server.

    GET    /api/apps                       the image, its applications and sample data
    GET    /api/apps/<name>/icon           an application's icon (SVG or PNG)
    POST   /api/apps/<name>/open           {"files": [...]} -> 201 the launch
    GET    /api/launches                   the launches, each with its windows
    GET    /api/launches/<id>              one launch
    POST   /api/launches/<id>/wait-window  {"timeout": s, "abort": bool} -> its window, once drawn
    DELETE /api/launches/<id>              stop it (its whole process group)
    GET    /api/windows                    the desktop's windows
    GET    /api/screenshot[?window=<id>]   a PNG of the screen or of one window

JSON in and out; an error is ``{"error": kind, "message": ...}`` with its status, never a
traceback.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import stat

from tornado import httpserver, netutil, web

from .apps import (
    AppExited,
    CannotStart,
    FileProblem,
    ImageApps,
    Launch,
    Launcher,
    NoIcon,
    UnknownApp,
    UnknownLaunch,
    WindowTimeout,
    read_icon,
    send_icon,
)
from .control_socket import UnsafeDirectory, ensure_private_dir
from .windows import UnknownWindow, WindowOffScreen, Windows

log = logging.getLogger("desktop_proxy")

MAX_BODY = 64 * 1024  # a request's JSON
MAX_REQUEST = 1 << 20  # what the HTTP servers read of a request's body at all
MAX_FILES = 256


class BadRequest(Exception):
    pass


class CrossSite(PermissionError):
    pass


class NotJson(ValueError):
    pass


def check_same_site(request) -> None:
    """Refuse a request that changes something unless it comes from the desktop's own pages
    or from a program. Another site's page (a form or a script there, sent with the user's
    cookies) is told apart by what the browser says it is (``Sec-Fetch-Site``), and by what it
    cannot send without asking first (CORS): a JSON POST, a PUT or a DELETE. jupyter-server-proxy
    does not check the Jupyter server's XSRF token for the requests it passes on."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise CrossSite(f"a {site} request may not change the desktop")
    kind = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if request.method == "POST" and kind != "application/json":
        raise NotJson("send JSON (Content-Type: application/json)")


ERRORS: dict[type, tuple[int, str]] = {
    BadRequest: (400, "bad-request"),
    CrossSite: (403, "cross-site"),
    NotJson: (415, "not-json"),
    FileProblem: (400, "file-problem"),
    UnknownApp: (404, "unknown-app"),
    UnknownLaunch: (404, "unknown-launch"),
    UnknownWindow: (404, "unknown-window"),
    NoIcon: (404, "no-icon"),
    AppExited: (409, "app-exited"),
    WindowOffScreen: (409, "window-off-screen"),
    CannotStart: (500, "cannot-start"),
    WindowTimeout: (504, "window-timeout"),
}


class DesktopControl:
    """What the API works on: the image's applications, their launches, the desktop's windows."""

    def __init__(self, apps: ImageApps, display: str, home: str | None = None, env: dict[str, str] | None = None):
        self.apps = apps
        self.launcher = Launcher(apps, display, home, env)
        self.windows = Windows(display)

    @classmethod
    def from_environment(cls, display: str, env: dict[str, str] | None = None) -> DesktopControl:
        return cls(ImageApps.load(os.environ.get("HEPSDESK_IMAGE_INFO")), display, env=env)

    async def window_list(self) -> list[dict]:
        return await self.windows.list(self.launcher.launches.values())

    @staticmethod
    def describe(launch: Launch, windows: list[dict]) -> dict:
        return {**launch.as_dict(), "windows": [w for w in windows if w["launch"] == launch.id]}

    async def shutdown(self) -> None:
        await self.launcher.shutdown()
        self.windows.close()


class ControlHandler(web.RequestHandler):
    def initialize(self, control: DesktopControl | None = None, failure: str = ""):
        self.control = control
        self.failure = failure

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self):
        # No cookies here: the Jupyter server in front checks the user, the socket is private.
        pass

    def prepare(self):
        check_same_site(self.request)

    def body(self, *fields: str) -> dict:
        """The request's JSON object, with no other keys than ``fields``."""
        if len(self.request.body) > MAX_BODY:
            raise BadRequest(f"the request is larger than {MAX_BODY // 1024} KiB")
        if not self.request.body.strip():
            return {}
        try:
            data = json.loads(self.request.body)
        except ValueError:  # also not UTF-8
            raise BadRequest("the request's body is not JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("the request's body must be a JSON object")
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise BadRequest(f"unknown field(s) {', '.join(map(repr, unknown))}; "
                             f"this request takes {', '.join(map(repr, fields)) or 'none'}")
        return data

    def log_exception(self, typ, value, tb):
        if type(value) in ERRORS:
            log.info("%s %s: %s", self.request.method, self.request.path, value)
        elif isinstance(value, web.HTTPError):
            log.info("%s %s: %d", self.request.method, self.request.path, value.status_code)
        else:
            super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs):
        error = kwargs["exc_info"][1] if "exc_info" in kwargs else None
        details = {}
        if type(error) in ERRORS:
            status_code, kind = ERRORS[type(error)]
            message = str(error)
            details = getattr(error, "details", {})
        elif isinstance(error, web.HTTPError) or error is None:
            kind = {404: "not-found", 405: "method-not-allowed"}.get(status_code, "http-error")
            message = {404: f"there is no {self.request.path} in the desktop's API",
                       405: f"{self.request.path} does not take {self.request.method}"}.get(
                           status_code, self._reason)
        else:
            kind, message = "internal", f"the desktop could not do that ({type(error).__name__}: {error})"
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish({**details, "error": kind, "message": message})


class AppsHandler(ControlHandler):
    def get(self):
        self.write(self.control.apps.as_dict())


class IconHandler(ControlHandler):
    def get(self, name: str):
        send_icon(self, *read_icon(self.control.apps.get(name)))


class OpenHandler(ControlHandler):
    def post(self, name: str):
        files = self.body("files").get("files", [])
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise BadRequest("'files' must be a list of file names")
        if len(files) > MAX_FILES:
            raise BadRequest(f"at most {MAX_FILES} files at once")
        launch = self.control.launcher.start(name, files)
        self.set_status(201)
        self.write(self.control.describe(launch, []))


class LaunchesHandler(ControlHandler):
    async def get(self):
        windows = await self.control.window_list()
        launches = self.control.launcher.launches.values()
        self.write({"launches": [self.control.describe(launch, windows) for launch in launches]})


class LaunchHandler(ControlHandler):
    async def get(self, launch_id: str):
        launch = self.control.launcher.get(launch_id)
        self.write(self.control.describe(launch, await self.control.window_list()))

    async def delete(self, launch_id: str):
        launch = self.control.launcher.get(launch_id)
        await self.control.launcher.stop(launch)
        self.write(self.control.describe(launch, []))


DRAW_LIMIT = 3.0  # seconds a found window is given to paint before wait-window answers


class WaitWindowHandler(ControlHandler):
    async def post(self, launch_id: str):
        body = self.body("timeout", "abort")
        timeout, abort = body.get("timeout", 60), body.get("abort", False)
        if (not isinstance(timeout, int | float) or isinstance(timeout, bool) or not math.isfinite(timeout)
                or not 0 < timeout <= 300):
            raise BadRequest("'timeout' must be a number of seconds, more than 0 and at most 300")
        if not isinstance(abort, bool):
            raise BadRequest("'abort' must be true or false")
        launch = self.control.launcher.get(launch_id)

        async def find() -> dict | None:
            # Its main window: the largest whose title has the application's name in it (a
            # splash screen or a dialog may come first), or any when the image names none.
            mine = [w for w in await self.control.window_list() if w["launch"] == launch.id]
            hint = launch.app.window.lower()
            named = [w for w in mine if hint in w["title"].lower()] if hint else mine
            return max(named, key=lambda w: w["width"] * w["height"], default=None)
        window = await self.control.launcher.wait_window(launch, find, timeout, abort)
        # A window is mapped before it paints: give it a moment to draw, so that a screenshot
        # taken next shows it (a window that stays one flat colour costs the whole moment).
        await self.control.windows.wait_drawn(window["id"], limit=DRAW_LIMIT)
        self.write(await find() or window)


class WindowsHandler(ControlHandler):
    async def get(self):
        self.write({"windows": await self.control.window_list()})


class ScreenshotHandler(ControlHandler):
    async def get(self):
        window = self.get_query_argument("window", None)
        if window is not None:
            try:
                window = int(window, 0)
            except ValueError:
                raise BadRequest(f"'window' must be a window's id (a number), not {window[:40]!r}") from None
        png = await self.control.windows.screenshot(window)
        self.set_header("Content-Type", "image/png")
        self.write(png)


class NotFoundHandler(ControlHandler):
    def prepare(self):
        raise web.HTTPError(404)


class NoDesktopHandler(ControlHandler):
    def prepare(self):
        self.set_status(503)
        self.finish({"error": "no-desktop", "message": f"the desktop could not start: {self.failure}"})


def control_routes(control: DesktopControl | None, failure: str = "") -> list:
    """The API's routes; without ``control`` (the desktop did not start) each says so."""
    if control is None:
        return [(r"/api/.*", NoDesktopHandler, {"failure": failure or "it is not running"})]
    launch = r"/api/launches/([0-9a-f]{1,32})"
    routes = [
        (r"/api/apps", AppsHandler),
        (r"/api/apps/([^/]+)/icon", IconHandler),
        (r"/api/apps/([^/]+)/open", OpenHandler),
        (r"/api/launches", LaunchesHandler),
        (launch, LaunchHandler),
        (launch + r"/wait-window", WaitWindowHandler),
        (r"/api/windows", WindowsHandler),
        (r"/api/screenshot", ScreenshotHandler),
        (r"/api/.*", NotFoundHandler),
    ]
    return [(pattern, handler, {"control": control}) for pattern, handler in routes]


class ControlSocket:
    """The API alone on the user's private unix socket (mode 600, in a directory of mode 700)."""

    def __init__(self, app: web.Application, path: str):
        self.app = app
        self.path = path
        self.server: httpserver.HTTPServer | None = None
        self._inode = None

    def start(self) -> bool:
        """Listen; when it cannot, log why and go on without (False)."""
        try:
            ensure_private_dir(self.path)
            self._remove_stale()
            sock = netutil.bind_unix_socket(self.path, mode=0o600)
        except (OSError, UnsafeDirectory) as e:
            log.warning("notebooks cannot reach this desktop: no control socket at %s: %s", self.path, e)
            return False
        self._inode = os.stat(self.path).st_ino
        self.server = httpserver.HTTPServer(self.app, max_body_size=MAX_REQUEST)
        self.server.add_socket(sock)
        log.info("control socket %s", self.path)
        return True

    def _remove_stale(self) -> None:
        """Remove a socket left by a desktop that is gone: ours, and nothing answers on it."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
            raise FileExistsError(f"{self.path} exists and is not a socket of yours")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1)
        try:
            probe.connect(self.path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(self.path)
            return
        finally:
            probe.close()
        raise FileExistsError(f"another desktop answers on {self.path}")

    def stop(self) -> None:
        if self.server is None:
            return
        self.server.stop()
        self.server = None
        try:
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except OSError:
            pass
