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
from .hubflow import desktop_tile, new_context, sign_in, wait_for_frames

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


# The video's picture, 64x36 grey levels (row-major), sampled from (x, y, w, h) in fractions.
REGION_PIXELS = """(x, y, w, h) => {
    const v = document.getElementById('screen');
    const c = document.createElement('canvas'); c.width = 64; c.height = 36;
    const ctx = c.getContext('2d');
    ctx.drawImage(v, x * v.videoWidth, y * v.videoHeight, w * v.videoWidth, h * v.videoHeight, 0, 0, 64, 36);
    const d = ctx.getImageData(0, 0, 64, 36).data; const grey = [];
    for (let i = 0; i < d.length; i += 4) grey.push(Math.round((d[i] + d[i + 1] + d[i + 2]) / 3));
    return grey;
}"""


def region(grey: list[int], box: tuple[float, float, float, float]) -> list[int]:
    """The grey levels of the 64x36 picture inside ``box`` (fractions of the picture)."""
    x0, y0 = int(box[0] * 64), int(box[1] * 36)
    x1, y1 = max(x0 + 1, int((box[0] + box[2]) * 64)), max(y0 + 1, int((box[1] + box[3]) * 36))
    return [grey[row * 64 + col] for row in range(y0, min(y1, 36)) for col in range(x0, min(x1, 64))]


def changed(before: list[int], after: list[int]) -> bool:
    """More than a tenth of the samples moved by more than 16 grey levels."""
    moved = sum(abs(a - b) > 16 for a, b in zip(before, after, strict=True))
    return moved > len(before) / 10


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
        expect(desktop_tile(page)).to_be_visible()
        with page.expect_popup() as popup:
            tile.click()
        desktop = popup.value
        desktop.wait_for_url(f"**/user/{USER}/{server}/desktop/", timeout=120_000)
        wait_for_frames(desktop, 1, timeout_s=90)
        first = desktop.evaluate(f"({REGION_PIXELS})(0, 0, 1, 1)")

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

        # The video changed where SasView's window is (in the desktop's coordinates).
        [window] = [w for w in windows if "SasView" in w["title"]][-1:]
        width, height = desktop.evaluate("[document.getElementById('screen').videoWidth, "
                                         "document.getElementById('screen').videoHeight]")
        box = (window["x"] / width, window["y"] / height, window["width"] / width, window["height"] / height)
        before = region(first, box)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = region(desktop.evaluate(f"({REGION_PIXELS})(0, 0, 1, 1)"), box)
            if changed(before, now):
                break
            desktop.wait_for_timeout(500)
        assert changed(before, now), "the video shows SasView's window where it opened"
        desktop.screenshot(path=str(Path(hub.state_dir) / "sasview-tile.png"))
    finally:
        context.close()
        stop(hub_api, server)
