"""The desktop's control API, from a notebook (``desktop_proxy.notebook``), on a real desktop
(Xtigervnc or Xvfb, openbox): the image's applications open, their windows are found and
photographed, those that crash or never open a window are reported and leave nothing running.

The desktop server runs as an unprivileged user (nobody) when the tests run as root, as it
runs as the user in a VM: so a file it may not read really is one (root reads them all).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy
import pytest

from desktop_proxy.notebook import (
    AppExited,
    Desktop,
    DesktopError,
    FileProblem,
    NoDesktop,
    UnknownApp,
    WindowTimeout,
    desktop,
)

from .desktop_checks import wait_until

NOBODY = 65534
VIEWER = """#!/bin/sh
# Shows its files in a terminal: a child of this script, so its window's pid is a descendant of the launch.
exec 2>&1
xterm -T "Test Viewer" -geometry 60x12+80+60 -e sh -c 'cat -- "$@"; exec sleep 600' viewer "$@"
"""
HANDOFF = """#!/bin/sh
# Leaves its window to a process it does not wait for, and exits: found by its title.
xterm -T "Handed Over" -geometry 40x8+500+300 -e sleep 600 &
"""
ICON = '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><rect width="16" height="16"/></svg>'


def image_info(base: Path) -> dict:
    return {"image": "hepsdesk-test", "title": "Test image", "applications": [
        {"name": "viewer", "title": "Test Viewer", "version": "1.0", "command": [str(base / "viewer.sh")],
         "window": "Test Viewer", "opens": [".txt"], "icon": str(base / "viewer.svg")},
        {"name": "handoff", "title": "Hand-off", "command": [str(base / "handoff.sh")], "window": "Handed Over"},
        {"name": "crasher", "title": "Crasher",
         "command": ["/bin/sh", "-c", 'echo "cannot load Qt platform plugin" >&2; exit 3']},
        {"name": "sleeper", "title": "Sleeper", "command": [shutil.which("sleep"), "600"], "window": "Never"},
        {"name": "broken entry", "command": "not a list"},
    ], "sample_data": [{"name": "examples", "description": "Examples", "path": str(base / "home")}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def members(pgid: int) -> list[str]:
    """The live processes of a process group, as ps sees them."""
    ps = subprocess.run(["ps", "-e", "-o", "pid=,pgid=,stat=,args="], capture_output=True, text=True, check=True)
    return [line for line in ps.stdout.splitlines()
            if int(line.split()[1]) == pgid and not line.split()[2].startswith("Z")]



class Server:
    def __init__(self, base: Path, port: int, process: subprocess.Popen):
        self.base, self.port, self.process = base, port, process
        self.url = f"http://127.0.0.1:{port}/"
        self.socket = base / "run" / "desktop.sock"
        self.home = base / "home"

    def log(self) -> str:
        return (self.base / "server.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def server():
    # Not under pytest's tmp_path: its directories are closed to other users.
    base = Path(tempfile.mkdtemp(prefix="hepsdesk-control-"))
    (base / "home").mkdir()
    (base / "home" / "notes.txt").write_text("hello from the notebook\n")
    (base / "viewer.sh").write_text(VIEWER)
    (base / "handoff.sh").write_text(HANDOFF)
    (base / "viewer.svg").write_text(ICON)
    for script in ("viewer.sh", "handoff.sh"):
        (base / script).chmod(0o755)
    (base / "info.json").write_text(json.dumps(image_info(base)))
    (base / "secret.txt").write_text("not for the desktop")
    as_user = []
    if os.getuid() == 0:
        for path in (base, base / "home", base / "home" / "notes.txt"):
            os.chown(path, NOBODY, NOBODY)
        (base / "secret.txt").chmod(0o600)  # root's
        as_user = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    else:
        (base / "secret.txt").chmod(0)
    port = free_port()
    env = {**os.environ, "HOME": str(base / "home"), "HEPSDESK_IMAGE_INFO": str(base / "info.json"),
           "HEPSDESK_DESKTOP_CONTROL": str(base / "run" / "desktop.sock"),
           "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1"}
    env.pop("XDG_RUNTIME_DIR", None)
    with open(base / "server.log", "wb") as log:
        process = subprocess.Popen([*as_user, sys.executable, "-m", "desktop_proxy", "--port", str(port),
                                    "--size", "1280x800"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=Path(__file__).resolve().parents[2])
    running = Server(base, port, process)
    if not wait_until(lambda: process.poll() is not None or running.socket.exists(), 30) or process.poll() is not None:
        process.kill()
        raise AssertionError(f"the desktop server did not start:\n{running.log()}")
    yield running
    process.terminate()
    process.wait(timeout=20)
    assert not running.socket.exists(), "the control socket is removed at shutdown"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def client(server, monkeypatch):
    monkeypatch.setenv("HEPSDESK_DESKTOP_CONTROL", str(server.socket))
    for name in ("JUPYTERHUB_SERVICE_URL", "JUPYTER_SERVER_URL", "JUPYTERHUB_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return desktop


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def test_the_notebook_lists_the_applications_and_the_socket_is_the_users_alone(client, server):
    apps = client.apps()
    assert [app["name"] for app in apps] == ["viewer", "handoff", "crasher", "sleeper"], "the broken entry is left out"
    assert apps[0]["title"] == "Test Viewer" and apps[0]["version"] == "1.0" and apps[0]["opens"] == [".txt"]
    assert client.info()["sample_data"] == [{"name": "examples", "description": "Examples", "path": str(server.home)}]
    info = server.socket.stat()
    assert info.st_mode & 0o777 == 0o600 and server.socket.parent.stat().st_mode & 0o777 == 0o700
    if os.getuid() == 0:
        assert info.st_uid == NOBODY

    # The same API beside the desktop page, where jupyter-server-proxy sends the browser's requests.
    status, kind, body = get(server.url + "api/apps")
    assert status == 200 and kind.startswith("application/json")
    assert json.loads(body)["applications"][0]["icon_url"] == "api/apps/viewer/icon"
    status, kind, body = get(server.url + "api/apps/viewer/icon")
    assert (status, kind, body) == (200, "image/svg+xml", ICON.encode())
    with urllib.request.urlopen(server.url + "api/apps/viewer/icon", timeout=10) as response:
        # An SVG could carry script: it never runs on the Jupyter server's origin.
        assert "sandbox" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    status, kind, body = get(server.url + "api/apps/crasher/icon")
    assert status == 404 and json.loads(body)["error"] == "no-icon"
    status, kind, body = get(server.url + "api/nowhere")
    assert status == 404 and json.loads(body) == {"error": "not-found",
                                                  "message": "there is no /api/nowhere in the desktop's API"}
    request = urllib.request.Request(server.url + "api/apps/viewer/open", data=b'{"files": "notes.txt"}',
                                     method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400 and json.loads(refused.value.read()) == {
        "error": "bad-request", "message": "'files' must be a list of file names"}


def test_another_sites_page_cannot_change_the_desktop(server):
    """A form or script on another site, sent with the user's cookies (jupyter-server-proxy does
    not check the Jupyter server's XSRF token): refused, whatever it asks."""
    before = len(json.loads(get(server.url + "api/launches")[2])["launches"])
    for path, kind, headers in (
            ("api/apps/viewer/open", "text/plain", {}),  # a form's POST (no CORS preflight)
            ("api/apps/viewer/open", "application/x-www-form-urlencoded", {}),
            ("api/apps/viewer/open", "application/json", {"Sec-Fetch-Site": "cross-site"}),
            ("api/files/uploads", "text/plain", {}),
            ("api/files/offers", "application/json", {"Sec-Fetch-Site": "same-site"})):
        request = urllib.request.Request(server.url + path, data=b'{"files": [], "name": "x", "size": 0}',
                                         method="POST", headers={"Content-Type": kind, **headers})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        answer = json.loads(refused.value.read())
        assert (refused.value.code, answer["error"]) in ((415, "not-json"), (403, "cross-site")), (path, answer)
    put = urllib.request.Request(server.url + "api/clipboard", data=b"x", method="PUT",
                                 headers={"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(put, timeout=10)
    assert refused.value.code in (403, 503)  # 503: no clipboard on this test's desktop
    assert len(json.loads(get(server.url + "api/launches")[2])["launches"]) == before, "nothing started"
    assert not list(server.home.glob("x*")), "nothing written"


def test_an_application_opens_its_window_is_photographed_and_it_closes(client, server, monkeypatch):
    monkeypatch.chdir(server.home)  # files are relative to the notebook's directory
    viewer = client.open("viewer", "notes.txt")
    window = viewer.wait_window(timeout=20)
    assert window["title"] == "Test Viewer" and window["launch"] == viewer.id
    assert window["pid"] != viewer.pid, "the window is the launched script's child's"
    assert window in client.windows() and viewer.windows() == [window]
    info = viewer.info()
    assert info["state"] == "running" and info["files"] == [str(server.home / "notes.txt")]

    shot = client.screenshot(window)
    assert (shot.width, shot.height) == (window["width"], window["height"]) and shot.data.startswith(b"\x89PNG")
    pixels = cv2.imdecode(numpy.frombuffer(shot.data, numpy.uint8), cv2.IMREAD_COLOR)
    assert pixels.shape[:2] == (window["height"], window["width"]) and pixels.std() > 0, "not a blank picture"
    assert (viewer.screenshot().width, client.screenshot(window["id"]).height) == (shot.width, shot.height)
    screen = client.screenshot()
    assert (screen.width, screen.height) == (1280, 800)
    screen.save(server.home / "screen.png")
    assert (server.home / "screen.png").read_bytes() == screen.data

    logs = server.home / ".local" / "state" / "hepsdesk" / "apps"
    assert logs.stat().st_mode & 0o777 == 0o700 and [p.name for p in logs.glob(f"viewer-*-{viewer.id}.log")]

    final = viewer.close()
    assert final["state"] == "exited" and final["returncode"] is not None
    assert not members(viewer.pid), "nothing of it is left"
    assert all(w["id"] != window["id"] for w in client.windows())


def test_a_window_left_to_a_process_it_does_not_wait_for_is_found_by_its_title(client):
    handoff = client.open("handoff")
    window = handoff.wait_window(timeout=20)
    assert window["title"] == "Handed Over" and window["launch"] == handoff.id
    assert handoff.info()["state"] == "exited", "the launcher exited; its window lives on"
    handoff.close()
    assert not members(handoff.pid)
    assert wait_until(lambda: all(w["id"] != window["id"] for w in client.windows()), 5)


def test_unknown_applications_and_files_are_refused(client, server):
    with pytest.raises(UnknownApp, match="there is no application 'paraview' on this desktop; "
                       "there are: crasher, handoff, sleeper, viewer") as unknown:
        client.open("paraview")
    assert unknown.value.known == ["crasher", "handoff", "sleeper", "viewer"]
    with pytest.raises(FileProblem, match=f"there is no file {server.home}/missing.txt"):
        client.open("viewer", server.home / "missing.txt")
    # Not readable by the desktop's user (a file of root's, or with mode 000).
    with pytest.raises(FileProblem, match=f"you may not read {server.base}/secret.txt"):
        client.open("viewer", server.base / "secret.txt")
    assert not [launch for launch in client.launches() if launch["app"] == "viewer" and launch["state"] == "running"]


def test_an_application_that_crashes_at_start_says_why_and_leaves_nothing(client):
    crasher = client.open("crasher")
    with pytest.raises(AppExited, match="Crasher exited with status 3 before it opened a window") as exited:
        crasher.wait_window(timeout=10)
    assert "cannot load Qt platform plugin" in str(exited.value)
    assert exited.value.returncode == 3 and "cannot load Qt platform plugin" in exited.value.output
    assert not members(crasher.pid)
    assert crasher.info()["state"] == "exited"


def test_an_application_that_opens_no_window_is_stopped_when_asked(client):
    sleeper = client.open("sleeper")
    started = time.monotonic()
    with pytest.raises(WindowTimeout, match="Sleeper opened no window within 2 s: it was stopped"):
        sleeper.wait_window(timeout=2, abort=True)
    assert time.monotonic() - started < 8
    assert not members(sleeper.pid)
    assert sleeper.info()["state"] == "exited"


def test_without_a_desktop_the_notebook_says_what_to_do(monkeypatch, tmp_path):
    for name in ("JUPYTERHUB_SERVICE_URL", "JUPYTER_SERVER_URL", "JUPYTERHUB_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(NoDesktop, match="no desktop is running .*: open the Desktop tile"):
        Desktop(str(tmp_path / "none.sock")).apps()


class FakeJupyter(http.server.BaseHTTPRequestHandler):
    """A Jupyter server whose jupyter-server-proxy 'starts' the desktop: the control socket
    appears (a link to the running desktop's) a moment after the request."""
    requests: list[tuple[str, str]] = []
    link: tuple[Path, Path] | None = None
    status = 200

    def do_GET(self):
        FakeJupyter.requests.append((self.path, self.headers.get("Authorization", "")))
        if FakeJupyter.link:
            link, target = FakeJupyter.link
            threading.Timer(0.5, link.symlink_to, (target,)).start()
        self.send_response(FakeJupyter.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"message": "Forbidden"}' if FakeJupyter.status >= 400 else b"{}")

    def log_message(self, *args):
        pass


def test_the_notebook_has_the_jupyter_server_start_the_desktop(monkeypatch, tmp_path, server):
    jupyter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeJupyter)
    threading.Thread(target=jupyter.serve_forever, daemon=True).start()
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", f"http://127.0.0.1:{jupyter.server_port}/user/alice/")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t0ken")
    try:
        FakeJupyter.link = (tmp_path / "desktop.sock", server.socket)
        assert [app["name"] for app in Desktop(str(tmp_path / "desktop.sock")).apps()][0] == "viewer"
        assert FakeJupyter.requests == [("/user/alice/desktop/api/apps", "token t0ken")]
        FakeJupyter.link, FakeJupyter.status = None, 403
        with pytest.raises(NoDesktop, match="the Jupyter server could not start one .HTTP 403"):
            Desktop(str(tmp_path / "other.sock")).apps()
    finally:
        jupyter.shutdown()


def test_a_window_that_is_not_there_is_an_error_not_a_picture(client):
    with pytest.raises(DesktopError, match="there is no window 12345 on the desktop"):
        client.screenshot(12345)


def test_a_desktop_that_cannot_start_tells_the_notebook_why(tmp_path, monkeypatch):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "HEPSDESK_DESKTOP_CONTROL": str(tmp_path / "run" / "desktop.sock")}
    process = subprocess.Popen([sys.executable, "-m", "desktop_proxy", "--port", str(free_port())], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=Path(__file__).resolve().parents[2])
    try:
        assert wait_until(lambda: (tmp_path / "run" / "desktop.sock").exists(), 20), "no control socket"
        monkeypatch.setenv("HEPSDESK_DESKTOP_CONTROL", env["HEPSDESK_DESKTOP_CONTROL"])
        with pytest.raises(NoDesktop, match="the desktop could not start: neither Xtigervnc nor Xvfb is installed"):
            desktop.open("viewer")
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_the_notebook_client_needs_nothing_but_the_standard_library():
    check = ("import sys, desktop_proxy.notebook; "
             "print(sorted({'tornado', 'numpy', 'cv2', 'Xlib', 'aiortc', 'IPython'} & set(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert loaded.stdout.strip() == "[]"
