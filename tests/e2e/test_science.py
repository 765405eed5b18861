"""Science on the platform, in VMs of the beamline images: the example notebooks run headless
in the VM (nbclient, the image's own kernel) and drive the image's GUI applications on the
desktop; a click on a launcher tile starts its application on the desktop.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from ..conftest import ROOT, sign_in_without_browser
from ..kernel import run_in_kernel
from .hubflow import new_context, picture_digest, sign_in, wait_for_frames

pytestmark = pytest.mark.devcloud

USER = "alice"
EXAMPLES = ROOT / "examples" / "notebooks"

# Runs in the VM's own python3 kernel (the server environment): executes the example with its
# image's kernel, as a person's "Run All" would, and reports what came out.
RUN_NOTEBOOK = r"""
import base64, json, subprocess, sys
from pathlib import Path
import cv2, numpy

name = {name!r}
Path(name).write_text({notebook!r})
done = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                       "--ExecutePreprocessor.timeout=400", "--output", "executed-" + name, name],
                      capture_output=True, text=True, timeout=600)
report = {{"returncode": done.returncode, "stderr": done.stderr[-3000:], "images": [], "errors": [], "text": []}}
if done.returncode == 0:
    executed = json.loads(Path("executed-" + name).read_text())
    for cell in executed["cells"]:
        for output in cell.get("outputs", []):
            if output["output_type"] == "error":
                report["errors"].append(output["ename"] + ": " + output["evalue"])
            data = output.get("data", {{}})
            if "image/png" in data:
                pixels = cv2.imdecode(numpy.frombuffer(base64.b64decode(data["image/png"]), numpy.uint8),
                                      cv2.IMREAD_COLOR)
                report["images"].append({{"width": pixels.shape[1], "height": pixels.shape[0],
                                          "std": float(pixels.std())}})
            for text in (data.get("text/plain", ""), output.get("text", "")):
                text = "".join(text) if isinstance(text, list) else text
                report["text"] += [line for line in text.splitlines() if line]
print(json.dumps(report))
"""


def start(hub, api, server: str, profile: str) -> str:
    response = api("POST", f"/users/{USER}/servers/{server}", json={"profile": profile})
    assert response.status_code in (201, 202), response.text
    events = api.progress(USER, server=server, timeout=300)
    assert events[-1].get("ready"), events
    return f"{hub.url}/user/{USER}/{server}/"


def stop(api, server: str) -> None:
    api("DELETE", f"/users/{USER}/servers/{server}", json={"remove": True})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and server in api("GET", f"/users/{USER}").json().get("servers", {}):
        time.sleep(1)


@pytest.fixture(scope="module")
def token(hub, hub_api):
    sign_in_without_browser(hub, USER, hub.users[USER])  # her identity (uid, home) is in auth_state
    response = hub_api("POST", f"/users/{USER}/tokens", json={"note": "test_science", "expires_in": 3600})
    assert response.status_code == 201, response.text
    return response.json()["token"]


def run_example(server_url: str, token: str, example: str) -> dict:
    notebook = (EXAMPLES / example).read_text()
    out = run_in_kernel(server_url, token, RUN_NOTEBOOK.format(name=example, notebook=notebook), timeout=660)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["returncode"] == 0, f"{example} failed in the VM:\n{report['stderr']}"
    assert not report["errors"], report["errors"]
    return report


@pytest.mark.parametrize("example, profile, window", [
    ("sans-sasview.ipynb", "neutron", "SasView"),
    ("diffraction-dioptas.ipynb", "diffraction", "Dioptas"),
    ("xrf-pymca.ipynb", "xrf", "PyMca"),
], ids=["sans", "diffraction", "xrf"])
def test_an_example_notebook_drives_its_gui_in_a_fresh_vm(hub, hub_api, token, example, profile, window):
    server = f"ex-{profile}"
    try:
        report = run_example(start(hub, hub_api, server, profile), token, example)
    finally:
        stop(hub_api, server)
    shots = [i for i in report["images"] if i["width"] >= 300]
    assert shots, f"{example} showed no screenshot: {report['images']}"
    windows = [t for t in report["text"] if "'title'" in t and window in t]
    assert windows, f"the {window} window was not in the desktop's window list: {report['text'][:20]}"
    screenshot = shots[-1]  # the last wide picture is the application's window (before it: plots)
    assert screenshot["std"] > 5, f"the {window} screenshot is blank: {screenshot}"
    assert any("not blank" in t for t in report["text"]), "the notebook checked its own screenshot"


def test_the_sasview_tile_starts_sasview_on_the_desktop(hub, hub_api, token, browser):
    server = "tile"
    start(hub, hub_api, server, "neutron")
    context = new_context(browser)
    page = context.new_page()
    try:
        sign_in(page, hub.url, USER, hub.users[USER], next_path=f"/user/{USER}/{server}/lab")
        page.wait_for_url(f"**/user/{USER}/{server}/lab**", timeout=120_000)
        tile = page.locator('.jp-LauncherCard[data-category="Desktop applications"]', has_text="SasView")
        expect(tile).to_be_visible(timeout=60_000)
        expect(page.locator(".jp-LauncherCard", has_text="Desktop")).to_be_visible()
        with page.expect_popup() as popup:
            tile.click()
        desktop = popup.value
        desktop.wait_for_url(f"**/user/{USER}/{server}/desktop/", timeout=120_000)
        wait_for_frames(desktop, 1, timeout_s=90)
        first = picture_digest(desktop)

        windows = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            windows = desktop.evaluate("fetch('api/windows').then(r => r.json()).then(j => j.windows)")
            if any("SasView" in w["title"] for w in windows):
                break
            desktop.wait_for_timeout(1000)
        assert any("SasView" in w["title"] for w in windows), f"no SasView window on the desktop: {windows}"
        launches = desktop.evaluate("fetch('api/launches').then(r => r.json())")
        assert any(launch["app"] == "sasview" for launch in launches["launches"]), launches

        deadline = time.monotonic() + 30
        while picture_digest(desktop) == first and time.monotonic() < deadline:
            desktop.wait_for_timeout(500)
        assert picture_digest(desktop) != first, "the video shows SasView's window where it opened"
        desktop.screenshot(path=str(Path(hub.state_dir) / "sasview-tile.png"))
    finally:
        context.close()
        stop(hub_api, server)
