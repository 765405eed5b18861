"""`hepsdesk demo`, as README's run command uses it: the printed URL and credentials work."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from .hubflow import new_context, sign_in

pytestmark = pytest.mark.devcloud

PORTS = ("--port", "18200", "--hub-port", "18281", "--oidc-port", "19600", "--ad-address", "127.0.0.7",
         "--storage-ldap-port", "19977")
HEPSDESK = str(Path(sys.executable).parent / "hepsdesk")


def start_demo(devcloud, hub_dir: Path) -> tuple[subprocess.Popen, str, dict[str, str], list[str]]:
    """Run `hepsdesk demo` until it says it is ready; return the process, URL, passwords, output."""
    process = subprocess.Popen(
        [HEPSDESK, "demo", "--state-dir", str(devcloud.settings.state_dir), "--hub-dir", str(hub_dir), *PORTS],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    url, passwords = None, {}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line.rstrip("\n"))
        if match := re.search(r"hepsdesk is ready: open (\S+) in a browser", line):
            url = match.group(1).rstrip("/")
        if match := re.match(r"\s+(\w+)\s+password (\S+)\s+--", line):
            passwords[match.group(1)] = match.group(2)
        if "The hub's log follows" in line:
            break
    if url is None or not passwords:
        process.kill()
        pytest.fail("hepsdesk demo did not print its URL and users:\n" + "\n".join(output))
    return process, url, passwords, output


def stop_demo(process: subprocess.Popen) -> list[str]:
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    return rest.splitlines()


def test_demo_prints_a_url_and_users_that_sign_in_and_stops_on_ctrl_c(devcloud, browser, tmp_path):
    process, url, passwords, output = start_demo(devcloud, tmp_path / "hub")
    try:
        assert url == "http://127.0.0.1:18200"
        assert set(passwords) == {"alice", "bob", "carol"}
        assert any("[1/3] Starting the directories (Samba AD DC, storage LDAP): done" in line for line in output)
        assert any("[3/3] Starting the SSO and JupyterHub: done" in line for line in output), output

        context = new_context(browser)
        page = context.new_page()
        # (to the home page: signing in to /hub/ would start a VM, which the e2e test covers)
        sign_in(page, url, "alice", passwords["alice"], next_path="/hub/home")
        page.wait_for_url(re.compile(r".*/hub/home"), timeout=30_000)
        expect(page.get_by_role("button", name=re.compile("Start My Server"))).to_be_visible()
        expect(page.get_by_role("link", name="Admin")).to_be_visible()
        context.close()
        # Her first sign-in made her computing account; the storage agent makes her home.
        home = devcloud.settings.storage_dir / "home" / "alice"
        deadline = time.monotonic() + 15
        while not home.is_dir() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert home.is_dir()

        context = new_context(browser)
        page = context.new_page()
        sign_in(page, url, "carol", passwords["carol"])
        expect(page.get_by_role("heading", name=re.compile("Not allowed to use hepsdesk"))).to_be_visible()
        context.close()
    finally:
        rest = stop_demo(process)
    assert process.returncode == 0, rest
    assert any("stopped" in line for line in rest), rest
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/hub/login", timeout=5)

    # A second run keeps the demo users' passwords.
    process, _, again, _ = start_demo(devcloud, tmp_path / "hub")
    stop_demo(process)
    assert again == passwords
    assert process.returncode == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/hub/login", timeout=5)
