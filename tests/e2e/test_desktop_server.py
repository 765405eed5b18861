"""The desktop server on its own (no hub): what the browser shows when it cannot start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest
from playwright.sync_api import expect

from hepsdesk_devcloud.processes import port_owner

from .hubflow import new_context


@pytest.fixture
def desktop_without_xvfb(tmp_path):
    port = 18765
    assert port_owner(port) is None
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    process = subprocess.Popen([sys.executable, "-m", "desktop_proxy", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=os.getcwd())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/static/desktop.css", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/", process
    process.terminate()
    process.wait(timeout=10)


def test_a_desktop_that_cannot_start_says_so(desktop_without_xvfb, browser):
    url, process = desktop_without_xvfb
    page = new_context(browser).new_page()
    response = page.goto(url)
    assert response.status == 503
    expect(page.get_by_role("heading")).to_have_text("Your desktop could not start")
    expect(page.locator("#failure")).to_contain_text("Xvfb is not installed")
    expect(page.get_by_text("Your notebooks and files are not affected")).to_be_visible()
    assert process.poll() is None, "the server keeps running to explain the failure"
