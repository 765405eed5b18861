"""Every GUI application the catalogue gives an image really starts: on a desktop running the
image's own environments (as built into the store by `hepsdesk images build`), each opens
its window, whose screenshot is not blank, and closes with nothing left running.

The desktop runs here rather than in a VM (a VM runs the same environments from the same
store: test_science.py shows that for the example notebooks), so that all of them fit in
about a minute.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy
import pytest

from hepsdesk_images.catalogue import load
from hepsdesk_images.store import Store

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load()
STORE = Store(CATALOGUE)
APPLICATIONS = [(image.name, app) for image in CATALOGUE.images.values() for app in image.applications]


@pytest.fixture(scope="module")
def desktops():
    """One desktop per image, started on first use; the previous image's is stopped then."""
    started: dict[str, tuple[subprocess.Popen, Path]] = {}

    def stop(name: str) -> None:
        process, base = started.pop(name)
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)

    def desktop_of(image_name: str) -> Path:
        if image_name not in started:
            for other in list(started):
                stop(other)
            image = CATALOGUE.image(image_name)
            assert STORE.image_ready(image), f"{image_name} is not built: run `hepsdesk images build`"
            base = Path(tempfile.mkdtemp(prefix=f"hepsdesk-{image_name}-"))
            (base / "run").mkdir(mode=0o700)
            env = {**os.environ, "HOME": str(base), "HEPSDESK_IMAGE_INFO": str(STORE.built(image).info_path),
                   "HEPSDESK_DESKTOP_CONTROL": str(base / "run" / "desktop.sock"), "HEPSDESK_DESKTOP_SIZE": "1600x900"}
            process = subprocess.Popen([sys.executable, "-m", "desktop_proxy", "--port", "0"], env=env, cwd=ROOT,
                                       stdout=open(base / "desktop.log", "wb"), stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 30
            while not (base / "run" / "desktop.sock").exists() and time.monotonic() < deadline:
                assert process.poll() is None, (base / "desktop.log").read_text()
                time.sleep(0.2)
            started[image_name] = (process, base)
        return started[image_name][1] / "run" / "desktop.sock"

    yield desktop_of
    for name in list(started):
        stop(name)


@pytest.mark.parametrize("image_name, app", APPLICATIONS, ids=[f"{i}:{a}" for i, a in APPLICATIONS])
def test_the_application_opens_its_window(desktops, monkeypatch, image_name, app):
    from desktop_proxy.notebook import desktop

    monkeypatch.setenv("HEPSDESK_DESKTOP_CONTROL", str(desktops(image_name)))
    handle = desktop.open(app)
    try:
        window = handle.wait_window(timeout=150, abort=True)
        time.sleep(2)  # painted
        shot = desktop.screenshot(window)
        pixels = cv2.imdecode(numpy.frombuffer(io.BytesIO(shot.data).getvalue(), numpy.uint8), cv2.IMREAD_COLOR)
        assert pixels.std() > 5, f"{app}'s window {window['title']!r} is blank"
        assert CATALOGUE.applications[app].window.lower() in window["title"].lower()
    finally:
        final = handle.close()
    assert final["state"] == "exited", f"closed with nothing left running: {final}"
