"""The clipboard between the browser (Chromium) and a real desktop: text and PNG images both
ways, Ctrl+V without the permission to read the clipboard, the one-click fallback when the
browser will not write, and the size limit. The desktop side is read and written with
``xclip``, as any program on the desktop would.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

import cv2
import numpy
import pytest
from playwright.sync_api import expect

from .desktop_checks import clipboard_image, wait_until
from .hubflow import wait_for_frames
from .test_desktop_server import start_desktop, stop_desktop

PORT = 18767
LIMIT_MB = 1


@pytest.fixture(scope="module")
def desktop():
    process = start_desktop(PORT, {**os.environ, "LANG": "C.UTF-8", "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1"},
                            "--size", "1280x720", "--clipboard-limit", str(LIMIT_MB))
    url = f"http://127.0.0.1:{PORT}/"
    with urllib.request.urlopen(url + "stats", timeout=10) as response:
        display = json.load(response)["display"]["name"]
    yield url, display
    stop_desktop(process)


def xclip(display: str, *args: str, data: bytes | None = None) -> bytes:
    command = ["xclip", "-display", display, "-selection", "clipboard", *args]
    if data is None:
        return subprocess.run(command, capture_output=True, timeout=10).stdout  # empty: nothing there (yet)
    # Offering, xclip stays behind to serve the selection: no pipes to wait on.
    subprocess.run(command, input=data, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=True)
    return b""



def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    pixels = numpy.zeros((height, width, 3), numpy.uint8)
    pixels[:, : width // 2] = colour  # two halves: not a flat picture
    return cv2.imencode(".png", pixels)[1].tobytes()


def pixels_of(data: bytes) -> numpy.ndarray:
    return cv2.imdecode(numpy.frombuffer(data, numpy.uint8), cv2.IMREAD_COLOR)


def open_page(browser, url: str, permissions: list[str]):
    context = browser.new_context(viewport={"width": 1280, "height": 720}, permissions=permissions)
    page = context.new_page()
    page.goto(url)
    wait_for_frames(page, 1, timeout_s=30)
    page.wait_for_function("window.hepsdesk.inputReady", timeout=10_000)
    return context, page



def test_text_and_images_cross_both_ways(desktop, browser):
    url, display = desktop
    context, page = open_page(browser, url, ["clipboard-read", "clipboard-write"])

    # Browser -> desktop, when the page gets focus.
    page.evaluate("navigator.clipboard.writeText('from the laptop: grüße 你好\\nsecond line')")
    page.evaluate("window.dispatchEvent(new Event('focus'))")
    assert wait_until(lambda: xclip(display, "-o") == "from the laptop: grüße 你好\nsecond line".encode())

    # Desktop -> browser, at once.
    xclip(display, "-i", data="from the desktop: ß € 世界".encode())
    assert wait_until(lambda: page.evaluate("navigator.clipboard.readText()") == "from the desktop: ß € 世界")
    # ...and not sent back to the desktop when the page gets focus again.
    sent = page.evaluate("window.hepsdesk.clipboard.toDesktop")
    page.evaluate("window.dispatchEvent(new Event('focus'))")
    page.wait_for_timeout(500)
    assert page.evaluate("window.hepsdesk.clipboard.toDesktop") == sent

    # A PNG from the desktop (a screenshot tool, a plot) -> the browser's clipboard.
    red = png(64, 40, (0, 0, 255))
    xclip(display, "-i", "-t", "image/png", data=red)
    image = wait_until(lambda: clipboard_image(page))
    assert image is not None and numpy.array_equal(pixels_of(image), pixels_of(red)), "the same picture"

    # A PNG on the browser's clipboard -> the desktop's.
    green = png(30, 20, (0, 255, 0))
    page.evaluate("""async (bytes) => {
        const blob = new Blob([new Uint8Array(bytes)], { type: 'image/png' });
        await navigator.clipboard.write([new ClipboardItem({ 'image/png': blob })]);
    }""", list(green))
    page.evaluate("window.dispatchEvent(new Event('focus'))")
    assert wait_until(lambda: numpy.array_equal(pixels_of(xclip(display, "-o", "-t", "image/png")), pixels_of(green)))
    context.close()


def test_ctrl_v_pastes_without_the_permission_and_a_refused_copy_takes_one_click(desktop, browser, tmp_path):
    url, display = desktop
    context, page = open_page(browser, url, ["clipboard-write"])  # reading the clipboard is not granted
    page.evaluate("window.dispatchEvent(new Event('focus'))")
    page.wait_for_function("window.hepsdesk.clipboard.canRead === false")

    # Ctrl+V: what the browser holds reaches the desktop, then the key itself does. In the
    # desktop's terminal, Ctrl+V makes the next key literal: Ctrl+C lands in the file instead
    # of stopping cat, which shows the key arrived after the paste.
    out = tmp_path / "literal.txt"
    page.locator("#screen").click(position={"x": 300, "y": 200})
    page.keyboard.type(f"cat > {out}")
    page.keyboard.press("Enter")
    page.evaluate("navigator.clipboard.writeText('pasted without permission')")
    page.keyboard.press("Control+v")
    page.keyboard.press("Control+c")
    page.keyboard.press("Enter")
    page.keyboard.press("Control+d")
    assert wait_until(lambda: xclip(display, "-o") == b"pasted without permission")
    assert wait_until(lambda: out.exists() and out.read_bytes() == b"\x03\n"), out.exists() and out.read_bytes()
    assert page.locator("#keyboard").input_value() == "", "the paste did not stay in the page"

    # The page without focus (the person is in another tab): the browser refuses to write, the
    # page offers it in one click.
    cdp = context.new_cdp_session(page)
    cdp.send("Emulation.setFocusEmulationEnabled", {"enabled": False})
    other = context.new_page()
    other.bring_to_front()
    assert page.evaluate("document.hasFocus()") is False
    xclip(display, "-i", data=b"copied while away")
    expect(page.locator("#notice")).to_contain_text("The desktop copied some text.")
    page.bring_to_front()
    page.get_by_role("button", name="Copy to this computer").click()
    expect(page.locator("#notice")).to_be_hidden()
    context.grant_permissions(["clipboard-read"])  # for the test to look
    assert page.evaluate("navigator.clipboard.readText()") == "copied while away"
    context.close()


def test_too_much_is_refused_with_a_message_and_nothing_changes(desktop, browser):
    url, display = desktop
    context, page = open_page(browser, url, ["clipboard-read", "clipboard-write"])
    xclip(display, "-i", data=b"kept")
    assert wait_until(lambda: page.evaluate("navigator.clipboard.readText()") == "kept")

    # The desktop copies more than the limit: the page says so, the browser's clipboard keeps what it had.
    xclip(display, "-i", data=b"x" * (LIMIT_MB * 1024 * 1024 + 10))
    expect(page.locator("#notice")).to_contain_text(f"more than {LIMIT_MB}.0 MB")
    assert page.evaluate("navigator.clipboard.readText()") == "kept"

    # The browser holds more than the limit: refused with the reason, the desktop's clipboard unchanged.
    xclip(display, "-i", data=b"desktop kept")
    assert wait_until(lambda: page.evaluate("navigator.clipboard.readText()") == "desktop kept")
    page.evaluate("(n) => navigator.clipboard.writeText('y'.repeat(n))", LIMIT_MB * 1024 * 1024 + 10)
    page.evaluate("window.dispatchEvent(new Event('focus'))")
    expect(page.locator("#notice")).to_contain_text("Not pasted into the desktop: the clipboard holds 1.0 MB; "
                                                    f"the desktop takes at most {LIMIT_MB}.0 MB")
    assert xclip(display, "-o") == b"desktop kept"

    # Neither text in another encoding nor other kinds of data.
    for kind, body, status, message in (
            ("text/plain", b"\xff\xfe", 400, "the text is not UTF-8"),
            ("image/png", b"GIF89a", 400, "the image is not a PNG"),
            ("application/x-sh", b"rm -rf ~", 415, "takes text and PNG images, not application/x-sh")):
        answer = page.request.put(url + "api/clipboard", data=body, headers={"Content-Type": kind})
        assert answer.status == status and message in answer.json()["message"], (kind, answer.status, answer.text())
    assert xclip(display, "-o") == b"desktop kept"
    context.close()
