"""What a scientist does in the browser, as reusable steps (tests and benchmarks/spawn_e2e.py).

Debian's Chromium driven by Playwright (no browser download). The flags keep Chromium off
the network and let its WebRTC reach the dev cloud's VMs, whose addresses are loopback
addresses (127.200.x.y).
"""

from __future__ import annotations

import re
import time

from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
]


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def new_context(browser: Browser) -> BrowserContext:
    return browser.new_context(viewport={"width": 1366, "height": 800})


def sign_in(page: Page, hub_url: str, username: str, password: str, next_path: str = "") -> None:
    """From the hub's login page through the SSO's login form, back to the hub."""
    page.goto(f"{hub_url}/hub/login" + (f"?next={next_path}" if next_path else ""))
    page.get_by_text(re.compile("Sign in with facility SSO")).click()
    page.fill("#username", username)
    page.fill("#password", password)
    page.get_by_role("button", name="Sign in").click()


def submit_spawn_form(page: Page, profile: str | None = None, timeout_s: float = 60) -> None:
    """On the spawn page's environment cards, pick ``profile`` (None: the preselected one) and Start."""
    cards = page.locator(".hepsdesk-profile")
    cards.first.wait_for(timeout=timeout_s * 1000)
    if profile is not None:
        page.locator(f'.hepsdesk-profile[data-profile="{profile}"]').click()
    page.get_by_role("button", name="Start").click()


def wait_for_lab(page: Page, username: str, timeout_s: float = 300, profile: str | None = None) -> list[str]:
    """Wait on the spawn page until JupyterLab's launcher shows, choosing ``profile`` (None: the
    default) if the environment cards are shown; return the progress messages seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    submitted = False
    while time.monotonic() < deadline:
        if re.search(rf"/user/{username}/lab", page.url):
            break
        if not submitted and page.locator(".hepsdesk-profile").count():
            submit_spawn_form(page, profile)
            submitted = True
            continue
        message = page.locator("#progress-message")
        try:
            text = message.first.inner_text(timeout=1000).strip() if message.count() else ""
        except PlaywrightTimeoutError:  # the page went on to JupyterLab in the meantime
            text = ""
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        page.wait_for_timeout(200)
    page.wait_for_url(re.compile(rf".*/user/{username}/lab.*"), timeout=max(1, deadline - time.monotonic()) * 1000)
    expect(desktop_tile(page)).to_be_visible(timeout=120_000)
    return seen


def desktop_tile(page: Page):
    """jupyter-server-proxy's "Desktop" tile (it opens a browser tab; "Desktop (in JupyterLab)"
    is the lab extension's, for a Lab tab)."""
    return page.locator('.jp-LauncherCard[title^="Desktop ["]')


def open_desktop(page: Page) -> Page:
    with page.expect_popup() as popup:
        desktop_tile(page).click()
    return popup.value


def frames_decoded(desktop: Page) -> int:
    stats = desktop.evaluate("window.hepsdesk ? window.hepsdesk.stats() : null")
    return (stats or {}).get("framesDecoded", 0)


def wait_for_frames(desktop: Page, count: int = 1, timeout_s: float = 60) -> float:
    """Wait until ``count`` frames were decoded; return when the first one was, in seconds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if frames_decoded(desktop) >= count:
                return time.monotonic() - started
        except Exception:  # the page is still loading
            pass
        desktop.wait_for_timeout(50)
    raise AssertionError(f"no video frames after {timeout_s:.0f} s")


def pixel(desktop: Page, x: float, y: float) -> list[int]:
    """RGB of the video's picture at (x, y), fractions of its width and height."""
    return desktop.evaluate("""([x, y]) => {
        const v = document.getElementById('screen');
        const c = document.createElement('canvas'); c.width = 1; c.height = 1;
        const ctx = c.getContext('2d');
        ctx.drawImage(v, x * v.videoWidth, y * v.videoHeight, 1, 1, 0, 0, 1, 1);
        return Array.from(ctx.getImageData(0, 0, 1, 1).data.slice(0, 3));
    }""", [x, y])


def picture_digest(desktop: Page) -> str:
    """A small fingerprint of the whole picture (changes when the screen does)."""
    return desktop.evaluate("""() => {
        const v = document.getElementById('screen');
        const c = document.createElement('canvas'); c.width = 96; c.height = 54;
        const ctx = c.getContext('2d'); ctx.drawImage(v, 0, 0, 96, 54);
        const d = ctx.getImageData(0, 0, 96, 54).data; let h = 0;
        for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) >>> 0;
        return String(h);
    }""")


def click_picture(desktop: Page, x: float, y: float) -> None:
    """Click the desktop at (x, y), fractions of the picture (the video is letterboxed)."""
    box = desktop.locator("#screen").bounding_box()
    width, height = desktop.evaluate("[document.getElementById('screen').videoWidth, "
                                     "document.getElementById('screen').videoHeight]")
    scale = min(box["width"] / width, box["height"] / height)
    left = box["x"] + (box["width"] - width * scale) / 2
    top = box["y"] + (box["height"] - height * scale) / 2
    desktop.mouse.click(left + x * width * scale, top + y * height * scale)
