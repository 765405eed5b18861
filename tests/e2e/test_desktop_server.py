"""The desktop server on its own (no hub), in Chromium: the picture arrives, a still desktop
sends no video, the desktop follows the browser window (RandR), what the browser shows when
the desktop cannot start, and a request made while it starts waits for it."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request

import pytest
from playwright.sync_api import expect

from hepsdesk_devcloud.processes import port_owner

from .hubflow import CHROMIUM_ARGS, frames_decoded, new_context, wait_for_frames


def start_desktop(port: int, env: dict, *args: str) -> subprocess.Popen:
    assert port_owner(port) is None
    process = subprocess.Popen([sys.executable, "-m", "desktop_proxy", "--port", str(port), *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=os.getcwd())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/static/desktop.css", timeout=1)
            return process
        except OSError:
            assert process.poll() is None, process.stdout.read().decode(errors="replace")
            time.sleep(0.2)
    process.kill()
    raise AssertionError("the desktop server did not answer")


def stop_desktop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=15)


@pytest.fixture
def desktop():
    port = 18766
    process = start_desktop(port, {**os.environ, "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1"})
    yield f"http://127.0.0.1:{port}/"
    stop_desktop(process)


def inbound(page) -> dict:
    return page.evaluate("window.hepsdesk.stats()") or {}


def settle(page, quiet_s: float = 1.5, timeout_s: float = 20) -> int:
    """Wait until no video frame arrived for ``quiet_s`` (the desktop is still); frames so far."""
    deadline = time.monotonic() + timeout_s
    last, since = inbound(page).get("framesReceived", 0), time.monotonic()
    while time.monotonic() < deadline:
        page.wait_for_timeout(250)
        now = inbound(page).get("framesReceived", 0)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
    raise AssertionError(f"the desktop kept sending video for {timeout_s:.0f} s")


def test_the_desktop_streams_h264_sends_nothing_while_still_and_follows_the_window(desktop, browser):
    assert "--disable-features=WebRtcHideLocalIpsWithMdns" in CHROMIUM_ARGS
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.goto(desktop)
    wait_for_frames(page, 1, timeout_s=30)
    # The desktop took the window's size (device pixels), and the picture has it.
    page.wait_for_function("window.hepsdesk.desktopSize && window.hepsdesk.desktopSize.width === 1280", timeout=10000)
    page.wait_for_function("document.getElementById('screen').videoWidth === 1280", timeout=10000)
    stats = inbound(page)
    assert stats["codec"] == "video/H264" and (stats["frameWidth"], stats["frameHeight"]) == (1280, 720), stats
    # The answer kept the playout-delay extension Chromium offered: pictures are shown when decoded.
    assert "rtp-hdrext/playout-delay" in page.evaluate("window.hepsdesk.pc.remoteDescription.sdp")

    # A still desktop: not one video frame in three seconds (once more if the panel's clock
    # turned a minute meanwhile: that is a change).
    for _attempt in range(2):
        still = settle(page)
        page.wait_for_timeout(3000)
        if inbound(page)["framesReceived"] == still:
            break
    assert inbound(page)["framesReceived"] == still, "a still desktop sends no video"

    # Typing into the terminal: the change arrives.
    page.locator("#screen").click(position={"x": 300, "y": 200})
    page.keyboard.type("echo hello")
    deadline = time.monotonic() + 10
    while frames_decoded(page) <= still and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert frames_decoded(page) > still, "typing produced no picture"

    # The window changes size: the desktop follows, and the stream carries the new size.
    page.set_viewport_size({"width": 1024, "height": 768})
    page.wait_for_function("document.getElementById('screen').videoWidth === 1024 && "
                           "document.getElementById('screen').videoHeight === 768", timeout=10000)
    assert page.evaluate("window.hepsdesk.desktopSize") == {"width": 1024, "height": 768}
    # Larger than the desktop has ever been (the capture's shared memory grows with it).
    page.set_viewport_size({"width": 1600, "height": 900})
    page.wait_for_function("document.getElementById('screen').videoWidth === 1600 && "
                           "document.getElementById('screen').videoHeight === 900", timeout=10000)
    context.close()


@pytest.fixture
def utf8_desktop():
    port = 18764
    process = start_desktop(port, {**os.environ, "LANG": "C.UTF-8", "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1"},
                            "--size", "1280x720")
    yield f"http://127.0.0.1:{port}/"
    stop_desktop(process)


def test_text_from_input_methods_and_non_us_keys_arrives_as_typed(utf8_desktop, browser, tmp_path):
    """What input methods (pinyin), on-screen keyboards and a non-US keyboard's AltGr deliver
    reaches the desktop's terminal as the characters the person chose."""
    out = tmp_path / "typed.txt"
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    page.goto(utf8_desktop)
    wait_for_frames(page, 1, timeout_s=30)
    page.wait_for_function("window.hepsdesk.inputReady", timeout=10_000)
    page.locator("#screen").click(position={"x": 300, "y": 200})
    expect(page.locator("#keyboard")).to_be_focused()
    page.keyboard.type("printf '%s' '")
    # Text an on-screen keyboard or the browser inserts (no key events).
    cdp.send("Input.insertText", {"text": "grüße "})
    # A German keyboard: ß on its own key, AltGr+E (AltGraph held), and the dead key ^ then e.
    def key(key: str, code: str, text: str = "", modifiers: int = 0):
        cdp.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": key, "code": code, "text": text,
                                            "modifiers": modifiers})
        cdp.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code, "modifiers": modifiers})
    key("ß", "Minus", "ß")
    cdp.send("Input.dispatchKeyEvent", {"type": "rawKeyDown", "key": "AltGraph", "code": "AltRight"})
    key("€", "KeyE", "€")
    cdp.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": "AltGraph", "code": "AltRight"})
    key("Dead", "Backquote")  # types nothing yet
    key("ê", "KeyE", "ê")
    # Pinyin through an input method: the composition is shown in the page, the committed text typed.
    cdp.send("Input.imeSetComposition", {"text": "nihao", "selectionStart": 5, "selectionEnd": 5})
    expect(page.locator("#composition")).to_have_text("nihao")
    expect(page.locator("#composition")).to_be_visible()
    cdp.send("Input.insertText", {"text": "你好世界"})
    expect(page.locator("#composition")).to_be_hidden()
    page.keyboard.type(f"' > {out}")
    page.keyboard.press("Enter")
    deadline = time.monotonic() + 15
    while not (out.exists() and out.read_text(encoding="utf-8")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert out.read_text(encoding="utf-8") == "grüße ß€ê你好世界"
    assert page.locator("#keyboard").input_value() == "", "nothing typed stays in the page"
    context.close()


@pytest.fixture
def desktop_without_xvfb(tmp_path):
    port = 18765
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    process = start_desktop(port, env)
    yield f"http://127.0.0.1:{port}/", process
    stop_desktop(process)


def test_a_desktop_that_cannot_start_says_so(desktop_without_xvfb, browser):
    url, process = desktop_without_xvfb
    page = new_context(browser).new_page()
    response = page.goto(url)
    assert response.status == 503
    expect(page.get_by_role("heading")).to_have_text("Your desktop could not start")
    expect(page.locator("#failure")).to_contain_text("neither Xtigervnc nor Xvfb is installed")
    expect(page.get_by_text("Your notebooks and files are not affected")).to_be_visible()
    assert process.poll() is None, "the server keeps running to explain the failure"


def test_the_user_picks_a_quality_preset_and_sees_the_statistics(desktop, browser):
    context = browser.new_context(viewport={"width": 1024, "height": 640})
    page = context.new_page()
    page.goto(desktop)
    wait_for_frames(page, 1, timeout_s=30)
    page.wait_for_function("window.hepsdesk.preset === 'auto'", timeout=10000)

    page.get_by_role("button", name="Picture settings").click()
    page.get_by_label("Low bandwidth").check()
    page.wait_for_function("window.hepsdesk.preset === 'low-bandwidth'", timeout=10000)
    page.get_by_label("Show statistics").check()
    stats = page.get_by_label("Video statistics")
    expect(stats).to_be_visible()
    expect(stats).to_contain_text("1024x640 H264", timeout=10000)
    expect(stats).to_contain_text("round trip")
    expect(stats).to_contain_text("preset low-bandwidth")
    overlay = page.evaluate("window.hepsdesk.overlay")
    assert overlay["rttMs"] is not None and overlay["rttMs"] < 100, overlay

    # The choice is remembered: a reload asks for it again, and the server confirms it.
    page.reload()
    wait_for_frames(page, 1, timeout_s=30)
    page.wait_for_function("window.hepsdesk.preset === 'low-bandwidth'", timeout=10000)
    expect(page.get_by_label("Video statistics")).to_be_visible()
    assert page.get_by_label("Low bandwidth").is_checked()
    context.close()


def test_a_high_density_screen_gets_a_desktop_in_its_device_pixels_up_to_4k(desktop, browser):
    context = browser.new_context(viewport={"width": 960, "height": 540}, device_scale_factor=2)
    page = context.new_page()
    page.goto(desktop)
    wait_for_frames(page, 1, timeout_s=30)
    # Sharp text: one desktop pixel per device pixel, and the fonts' resolution doubled.
    page.wait_for_function("window.hepsdesk.desktopSize && window.hepsdesk.desktopSize.width === 1920", timeout=10000)
    page.wait_for_function("document.getElementById('screen').videoWidth === 1920", timeout=10000)
    with urllib.request.urlopen(desktop + "stats", timeout=10) as response:
        assert json.load(response)["display"]["dpi"] == 192
    # A larger window still: at most 3840x2160, keeping its shape.
    page.set_viewport_size({"width": 1920, "height": 1200})
    page.wait_for_function("window.hepsdesk.desktopSize && window.hepsdesk.desktopSize.height === 2160", timeout=15000)
    assert page.evaluate("window.hepsdesk.desktopSize") == {"width": 3456, "height": 2160}
    page.wait_for_function("document.getElementById('screen').videoWidth === 3456", timeout=15000)
    context.close()


def ask_unix(path, target: str, timeout: float = 60) -> tuple[str, dict[str, str]]:
    """The status line and headers of ``GET target`` over the unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(f"GET {target} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    status, *lines = answer.split(b"\r\n\r\n")[0].decode().split("\r\n")
    return status, {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_a_request_while_the_desktop_starts_waits_for_it_and_is_sent_on(tmp_path):
    """jupyter-server-proxy probes a starting desktop with exponential backoff (1.3 s, then
    2.6 s ...). The desktop's socket listens before its modules load (mode 600), so the first
    probe waits, and is answered (307 to itself) once the desktop is up, not refused."""
    (tmp_path / "home").mkdir()
    (tmp_path / "run").mkdir(mode=0o700)
    path = tmp_path / "run" / "web.sock"
    env = {**os.environ, "HOME": str(tmp_path / "home"), "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1",
           "HEPSDESK_DESKTOP_CONTROL": str(tmp_path / "run" / "control.sock")}
    process = subprocess.Popen([sys.executable, "-m", "desktop_proxy", "--unix-socket", str(path)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not path.exists():
            assert process.poll() is None and time.monotonic() < deadline, "the desktop made no socket"
            time.sleep(0.01)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        status, headers = ask_unix(path, "/stats?first")  # before the desktop is up: it waits
        assert status.split()[1] == "307" and headers["location"] == "/stats?first", (status, headers)
        status, _ = ask_unix(path, "/stats")
        assert status.split()[1] == "200", status
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    started = output.index("desktop on unix socket")
    assert output.index("307 GET /stats?first") > started, output  # answered once the desktop was up
