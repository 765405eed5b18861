"""The launcher's tiles for the image's GUI applications, in a real JupyterLab in Chromium:
a tile per application, a click starts it on the desktop (opened in a new tab), and an
application that cannot start is reported in JupyterLab with the end of its output.

A JupyterLab of this machine (the same server extension, jupyter-server-proxy and lab
extension a VM runs) with a test image's applications; the VMs' own images are exercised in
test_science.py.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .hubflow import new_context, wait_for_frames

ICON = ('<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><rect width="16" height="16" '
        'fill="#1f5fa8"/></svg>')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab():
    base = Path(tempfile.mkdtemp(prefix="hepsdesk-tiles-"))
    home = base / "home"
    home.mkdir()
    (base / "viewer.svg").write_text(ICON)
    info = {"image": "hepsdesk-test", "title": "Test image", "applications": [
        {"name": "viewer", "title": "Test Viewer", "version": "1.0", "window": "Test Viewer",
         "command": [shutil.which("xterm"), "-T", "Test Viewer", "-geometry", "60x12+80+60"],
         "icon": str(base / "viewer.svg")},
        {"name": "crasher", "title": "Crasher", "version": "0.1", "window": "Crasher",
         "command": ["/bin/sh", "-c", 'echo "cannot load Qt platform plugin xcb" >&2; exit 3']},
    ]}
    (base / "info.json").write_text(json.dumps(info))
    token = secrets.token_hex(16)
    port = free_port()
    env = {**os.environ, "HOME": str(home), "HEPSDESK_IMAGE_INFO": str(base / "info.json"),
           "HEPSDESK_DESKTOP_CONTROL": str(base / "run" / "desktop.sock"), "HEPSDESK_DESKTOP_SIZE": "1280x800",
           "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1", "JUPYTER_TOKEN": token}
    for name in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "XDG_RUNTIME_DIR"):
        env.pop(name, None)
    log = open(base / "lab.log", "wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("jupyter-lab")), "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", f"--ServerApp.root_dir={home}"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(f"{url}api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.3)
    else:
        process.kill()
        raise AssertionError("JupyterLab did not start:\n" + (base / "lab.log").read_text(errors="replace")[-3000:])
    yield url, token, home
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
    shutil.rmtree(base, ignore_errors=True)


def test_a_tile_per_application_starts_it_on_the_desktop_or_says_why_not(lab, browser):
    url, token, _ = lab
    # The server extension lists the applications without starting the desktop.
    with urllib.request.urlopen(f"{url}hepsdesk/apps?token={token}", timeout=10) as response:
        listed = json.loads(response.read())
    assert [a["name"] for a in listed["applications"]] == ["viewer", "crasher"]
    assert all("command" not in a for a in listed["applications"]), "the browser gets no paths"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}hepsdesk/apps", timeout=10)
    assert refused.value.code == 403, "an anonymous browser gets nothing"

    context = new_context(browser)
    page = context.new_page()
    try:
        page.goto(f"{url}lab?token={token}")
        tiles = page.locator('.jp-LauncherCard[data-category="Desktop applications"]')
        expect(tiles).to_have_count(2, timeout=60_000)
        expect(tiles.nth(0)).to_contain_text("Test Viewer")
        expect(tiles.nth(1)).to_contain_text("Crasher")
        expect(tiles.nth(0).locator("svg")).to_have_count(1)  # the application's own icon

        # An application that cannot start: the desktop opens, JupyterLab says what happened.
        with page.expect_popup() as popup:
            tiles.nth(1).click()
        dialog = page.locator(".jp-Dialog")
        expect(dialog).to_contain_text("Crasher stopped", timeout=60_000)
        expect(dialog).to_contain_text("exited with status 3")
        expect(dialog).to_contain_text("cannot load Qt platform plugin xcb")
        dialog.get_by_role("button").last.click()
        popup.value.close()

        # An application that starts: its window is on the desktop, in the new tab's video.
        with page.expect_popup() as popup:
            tiles.nth(0).click()
        desktop = popup.value
        desktop.wait_for_url("**/desktop/", timeout=60_000)
        wait_for_frames(desktop, 1, timeout_s=60)
        windows = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(w["title"] == "Test Viewer" for w in windows):
            windows = desktop.evaluate("fetch('api/windows').then(r => r.json()).then(j => j.windows)")
            desktop.wait_for_timeout(300)
        assert any(w["title"] == "Test Viewer" and w["launch"] for w in windows), windows
        expect(page.locator(".jp-Dialog")).to_have_count(0)
    finally:
        context.close()


def test_the_desktop_as_a_lab_tab_shows_live_frames_and_takes_keys_and_files(lab, browser):
    """"Desktop (in JupyterLab)": the live desktop as a tab beside the notebooks; the keyboard
    goes to it when it is the active tab; its clipboard and file requests pass the Jupyter
    server (its XSRF check) in front of the desktop."""
    url, token, lab_home = lab
    context = new_context(browser)
    page = context.new_page()
    try:
        page.goto(f"{url}lab?token={token}")
        tile = page.locator('.jp-LauncherCard[data-category="Notebook"]', has_text="Desktop (in JupyterLab)")
        expect(tile).to_be_visible(timeout=60_000)
        tile.click()
        panel = page.locator("#hepsdesk-desktop-panel")
        expect(panel).to_be_visible()
        expect(page.locator('.lm-TabBar-tab.jp-mod-current[data-id="hepsdesk-desktop-panel"]')).to_contain_text("Desktop")
        deadline = time.monotonic() + 60
        while not (frame := next((f for f in page.frames if f.url.endswith("/desktop/")), None)):
            assert time.monotonic() < deadline, [f.url for f in page.frames]
            page.wait_for_timeout(200)
        wait_for_frames(frame, 1, timeout_s=60)
        decoded = frame.evaluate("window.hepsdesk.stats()")["framesDecoded"]
        frame.wait_for_function("window.hepsdesk.inputReady", timeout=20_000)

        # The keys go to the desktop (its terminal, which has the focus) once the tab is active.
        marker = f"lab-panel-{secrets.token_hex(3)}"
        page.locator("#hepsdesk-desktop-panel iframe").click(position={"x": 400, "y": 300})
        page.keyboard.type(f"touch {marker}")
        page.keyboard.press("Enter")
        deadline = time.monotonic() + 20
        while not (lab_home / marker).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (lab_home / marker).exists(), "typed in the Lab tab, run on the desktop"
        assert frame.evaluate("window.hepsdesk.stats()")["framesDecoded"] > decoded, "live frames"

        # Through the Jupyter server: an upload and the clipboard (requests that need its XSRF token).
        state = frame.evaluate("desktopFiles.upload(new File(['from the lab tab'], 'via-lab.txt'))")
        assert state and state["done"], state
        assert (lab_home / "via-lab.txt").read_text() == "from the lab tab"
        answer = frame.evaluate("api('PUT', 'api/clipboard', new Blob(['from the lab']), {type: 'text/plain'})")
        assert answer["kind"] == "text" and answer["size"] == len("from the lab")
    finally:
        context.close()
