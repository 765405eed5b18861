"""The desktop through a TURN relay, in Chromium: a real coturn with a shared secret, the
browser allowed to use relayed candidates only (a facility whose firewall lets media out
through its TURN server). The desktop mints each session's TURN credentials; the secret
never reaches the browser."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time

import pytest
from playwright.sync_api import expect

from hepsdesk_devcloud.processes import port_owner

from .hubflow import wait_for_frames
from .test_desktop_server import start_desktop, stop_desktop

TURN_PORT = 19478
DESKTOP_PORT = 18767


@pytest.fixture
def turn_server(tmp_path):
    """coturn on 127.0.0.1 with a shared secret (its REST-API credentials), relaying on
    loopback; its log, and the secret in a file as the desktop reads it."""
    turnserver = shutil.which("turnserver")
    assert turnserver, "coturn is not installed (scripts/setup.sh installs it)"
    assert port_owner(TURN_PORT) is None
    secret = secrets.token_hex(16)
    config = tmp_path / "turnserver.conf"
    config.write_text("\n".join([
        "listening-ip=127.0.0.1", "relay-ip=127.0.0.1", f"listening-port={TURN_PORT}",
        "min-port=49400", "max-port=49450", "use-auth-secret", f"static-auth-secret={secret}",
        "realm=hepsdesk.test", "no-tls", "no-dtls", "no-cli", "allow-loopback-peers", "fingerprint",
        f"pidfile={tmp_path / 'turnserver.pid'}", f"userdb={tmp_path / 'turndb'}",
        f"log-file={tmp_path / 'turn.log'}", "simple-log", "verbose", ""]))
    process = subprocess.Popen([turnserver, "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while port_owner(TURN_PORT) is None:
            assert process.poll() is None and time.monotonic() < deadline, "coturn did not start"
            time.sleep(0.1)
        secret_file = tmp_path / "turn-secret"
        secret_file.write_text(secret)
        secret_file.chmod(0o600)
        yield secret_file, tmp_path / "turn.log", secret
    finally:
        process.terminate()
        process.wait(10)


def test_the_desktop_streams_through_a_turn_relay_with_credentials_made_per_session(turn_server, browser):
    secret_file, turn_log, secret = turn_server
    desktop = start_desktop(DESKTOP_PORT, {
        **os.environ, "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1", "JUPYTERHUB_USER": "alice",
        "HEPSDESK_DESKTOP_ICE_SERVERS": f"turn:127.0.0.1:{TURN_PORT}?transport=udp",
        "HEPSDESK_DESKTOP_TURN_SECRET_FILE": str(secret_file), "HEPSDESK_DESKTOP_ICE_POLICY": "relay"})
    try:
        context = browser.new_context(viewport={"width": 1024, "height": 768})
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{DESKTOP_PORT}/")
        wait_for_frames(page, 1, timeout_s=45)
        # The browser's side of the media path is a relayed candidate on the TURN server.
        local = page.evaluate("""async () => {
            const stats = [...(await window.hepsdesk.pc.getStats()).values()];
            const pair = stats.find((s) => s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded');
            const local = pair && stats.find((s) => s.id === pair.localCandidateId);
            return local && { type: local.candidateType, port: local.port, relayProtocol: local.relayProtocol }; }""")
        assert local and local["type"] == "relay", local
        config = page.evaluate("window.hepsdesk.pc.getConfiguration()")
        assert config["iceTransportPolicy"] == "relay"
        [server] = config["iceServers"]
        expiry, user = server["username"].split(":")
        assert user == "alice" and 0 < int(expiry) - time.time() <= 600 + 60
        assert server["credential"] != secret
        context.close()
    finally:
        stop_desktop(desktop)
        output = desktop.stdout.read().decode(errors="replace")
    log = turn_log.read_text(errors="replace")
    assert ":alice" in log  # coturn saw the session's user
    assert secret not in output and secret not in log


def test_a_turn_server_refusing_the_credentials_is_named_on_the_page(turn_server, browser, tmp_path):
    wrong = tmp_path / "other-secret"
    wrong.write_text("not-the-turn-servers-secret")
    desktop = start_desktop(DESKTOP_PORT, {
        **os.environ, "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1",
        "HEPSDESK_DESKTOP_ICE_SERVERS": f"turn:127.0.0.1:{TURN_PORT}?transport=udp",
        "HEPSDESK_DESKTOP_TURN_SECRET_FILE": str(wrong), "HEPSDESK_DESKTOP_ICE_POLICY": "relay"})
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{DESKTOP_PORT}/")
        expect(page.locator("#status")).to_contain_text("refused this desktop's credentials", timeout=20000)
        context.close()
    finally:
        stop_desktop(desktop)
