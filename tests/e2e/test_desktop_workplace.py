"""The desktop as a daily workplace, in Chromium, with the real desktop in a dev-cloud VM behind
the hub: a German keyboard, a dead key and pinyin type what they say; the clipboard crosses
both ways; 50 MB files go up and down with their bytes intact; a tone played in the VM is heard
at its frequency; a reload resumes the same desktop; the desktop as a JupyterLab tab; and the
idle culler stops the untouched desktop while it keeps the one in use.

Everything a person does here goes through the hub's proxy and the Jupyter server in the VM,
as it does for a user: the local tests (test_desktop_clipboard.py, test_desktop_files.py,
test_desktop_sound.py, test_desktop_reconnect.py, test_desktop_input.py) cover the details.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import time
import wave
from pathlib import Path

import numpy
import pytest
from playwright.sync_api import expect

from ..conftest import SESSION, running_hub
from .hubflow import click_picture, new_context, pixel, sign_in, wait_for_frames, wait_for_lab

pytestmark = pytest.mark.devcloud

IDLE_TIMEOUT = 60  # the profile's: the desktop reports input every 10 s
SIZE = 50 * 1024 * 1024
TONE_HZ = 1000


@pytest.fixture(scope="module")
def workplace(devcloud, browser, tmp_path_factory):
    profiles = [{"slug": "workplace", "display_name": "Workplace desktop", "image": "hepsdesk-desktop",
                 "flavor": "c1.small", "idle_timeout": IDLE_TIMEOUT}]
    with running_hub(devcloud, tmp_path_factory.mktemp("workplace-hub"), (18620, 18621, 19620), profiles) as hub:
        # bob's server: started, its desktop opened once and never touched again.
        bob = new_context(browser)
        bob_page = bob.new_page()
        sign_in(bob_page, hub.url, "bob", hub.users["bob"])
        wait_for_lab(bob_page, "bob")
        bob_page.goto(f"{hub.url}/user/bob/desktop/")
        wait_for_frames(bob_page, 1, timeout_s=90)
        bob.close()

        alice = new_context(browser)
        alice.grant_permissions(["clipboard-read", "clipboard-write"])
        lab = alice.new_page()
        sign_in(lab, hub.url, "alice", hub.users["alice"])
        wait_for_lab(lab, "alice")
        desktop = alice.new_page()
        desktop.goto(f"{hub.url}/user/alice/desktop/")
        wait_for_frames(desktop, 1, timeout_s=90)
        desktop.wait_for_function("window.hepsdesk.inputReady", timeout=20_000)
        deadline = time.monotonic() + 60  # the terminal (white, top left)
        while min(pixel(desktop, 0.15, 0.2)) < 200 and time.monotonic() < deadline:
            desktop.wait_for_timeout(300)
        [server] = [s for s in devcloud.connect("devcloud-admin").compute.servers(all_projects=True)
                    if (s.metadata or {}).get("hepsdesk-user") == "alice"
                    and (s.metadata or {}).get("hepsdesk-hub") == f"hepsdesk-test-{SESSION}"]
        home = devcloud.guest_dir(server.id) / "disk" / "upper" / "home" / "alice"
        yield hub, lab, desktop, home
        alice.close()


def run(desktop, command: str) -> None:
    """Type a command into the desktop's terminal."""
    click_picture(desktop, 0.2, 0.3)
    desktop.keyboard.type(command)
    desktop.keyboard.press("Enter")


def wait_for(path: Path, content: bytes | None = None, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (content is None or path.read_bytes() == content):
            return path.read_bytes()
        time.sleep(0.2)
    raise AssertionError(f"{path} is {path.read_bytes()[:200] if path.exists() else 'missing'}")


def test_a_german_keyboard_a_dead_key_and_pinyin_type_what_they_say(workplace):
    _, _, desktop, home = workplace
    cdp = desktop.context.new_cdp_session(desktop)
    name = f"typed-{secrets.token_hex(3)}.txt"
    click_picture(desktop, 0.2, 0.3)
    desktop.keyboard.type("printf '%s' '")

    def key(key: str, code: str, text: str = ""):
        cdp.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": key, "code": code, "text": text})
        cdp.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code})
    key("ß", "Minus", "ß")
    cdp.send("Input.dispatchKeyEvent", {"type": "rawKeyDown", "key": "AltGraph", "code": "AltRight"})
    key("€", "KeyE", "€")
    cdp.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": "AltGraph", "code": "AltRight"})
    key("Dead", "Backquote")
    key("ê", "KeyE", "ê")
    cdp.send("Input.imeSetComposition", {"text": "nihao", "selectionStart": 5, "selectionEnd": 5})
    expect(desktop.locator("#composition")).to_have_text("nihao")
    cdp.send("Input.insertText", {"text": "你好世界"})
    desktop.keyboard.type(f"' > ~/{name}")
    desktop.keyboard.press("Enter")
    assert wait_for(home / name).decode() == "ß€ê你好世界"


def test_the_clipboard_crosses_both_ways(workplace):
    _, _, desktop, home = workplace
    desktop.evaluate("navigator.clipboard.writeText('from the laptop: grüße 你好')")
    desktop.evaluate("window.dispatchEvent(new Event('focus'))")
    desktop.wait_for_function("window.hepsdesk.clipboard.toDesktop >= 1", timeout=10_000)
    run(desktop, "xclip -selection clipboard -o > ~/pasted.txt")
    assert wait_for(home / "pasted.txt").decode() == "from the laptop: grüße 你好"

    run(desktop, "printf 'from the VM: ß' | xclip -selection clipboard")
    deadline = time.monotonic() + 15
    while desktop.evaluate("navigator.clipboard.readText()") != "from the VM: ß" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert desktop.evaluate("navigator.clipboard.readText()") == "from the VM: ß"


def test_50_mb_files_go_up_and_down_intact(workplace, tmp_path):
    _, _, desktop, home = workplace
    laptop = tmp_path / "scan-0042.h5"
    laptop.write_bytes(os.urandom(SIZE))
    digest = hashlib.sha256(laptop.read_bytes()).hexdigest()
    desktop.set_input_files("#upload-input", str(laptop))
    expect(desktop.locator(".transfer", has_text=laptop.name)).to_contain_text("saved as /home/alice/scan-0042.h5",
                                                                               timeout=180_000)
    assert hashlib.sha256(wait_for(home / laptop.name)).hexdigest() == digest

    with desktop.expect_download(timeout=180_000) as download:
        run(desktop, f"cp ~/{laptop.name} ~/result.h5 && hepsdesk-send ~/result.h5")
    assert download.value.suggested_filename == "result.h5"
    assert hashlib.sha256(Path(download.value.path()).read_bytes()).hexdigest() == digest


def test_a_tone_played_in_the_vm_is_heard(workplace):
    _, _, desktop, home = workplace
    samples = (0.5 * 32767 * numpy.sin(2 * math.pi * TONE_HZ * numpy.arange(48000 * 4) / 48000)).astype("<i2")
    with wave.open(str(home / "tone.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(samples.tobytes())
    (home / "tone.wav").chmod(0o644)
    desktop.get_by_role("button", name="Unmute the desktop's sound").click()
    desktop.evaluate("""() => {
        const context = new AudioContext();
        const analyser = context.createAnalyser();
        analyser.fftSize = 8192;
        context.createMediaStreamSource(window.hepsdesk.sound.srcObject).connect(analyser);
        window.loudest = () => {
            const levels = new Float32Array(analyser.frequencyBinCount);
            analyser.getFloatFrequencyData(levels);
            let best = 1;
            for (let i = 1; i < levels.length; i++) if (levels[i] > levels[best]) best = i;
            return { hz: best * context.sampleRate / analyser.fftSize, db: levels[best] };
        };
    }""")
    run(desktop, "paplay ~/tone.wav")
    deadline = time.monotonic() + 15
    heard = None
    while time.monotonic() < deadline:
        loudest = desktop.evaluate("window.loudest()")
        if loudest["db"] > -60 and abs(loudest["hz"] - TONE_HZ) < 20:
            heard = loudest
            break
        time.sleep(0.1)
    assert heard, desktop.evaluate("window.loudest()")


def test_a_reload_resumes_the_same_desktop(workplace):
    _, _, desktop, _ = workplace
    before = sorted(w["id"] for w in desktop.evaluate("fetch('api/windows').then(r => r.json()).then(j => j.windows)"))
    desktop.reload()
    wait_for_frames(desktop, 1, timeout_s=20)
    took = desktop.evaluate("(window.hepsdesk.firstFrameAt - performance.timeOrigin) / 1000")
    assert took < 2.0, f"the picture came {took:.2f} s after the reload"
    after = sorted(w["id"] for w in desktop.evaluate("fetch('api/windows').then(r => r.json()).then(j => j.windows)"))
    assert after == before, "the same desktop, with its windows"
    desktop.wait_for_function("window.hepsdesk.inputReady", timeout=20_000)


def test_the_desktop_as_a_lab_tab(workplace):
    _, lab, _, home = workplace
    lab.bring_to_front()
    tile = lab.locator('.jp-LauncherCard[data-category="Notebook"]', has_text="Desktop (in JupyterLab)")
    tile.click()
    expect(lab.locator("#hepsdesk-desktop-panel")).to_be_visible()
    deadline = time.monotonic() + 60
    while not (frame := next((f for f in lab.frames if f.url.endswith("/user/alice/desktop/")), None)):
        assert time.monotonic() < deadline
        lab.wait_for_timeout(200)
    wait_for_frames(frame, 1, timeout_s=60)
    frame.wait_for_function("window.hepsdesk.inputReady", timeout=20_000)
    lab.locator("#hepsdesk-desktop-panel iframe").click(position={"x": 300, "y": 250})
    lab.keyboard.type("touch ~/from-the-lab-tab")
    lab.keyboard.press("Enter")
    wait_for(home / "from-the-lab-tab")


def test_the_idle_culler_stops_the_untouched_desktop_and_keeps_the_one_in_use(workplace):
    hub, _, desktop, _ = workplace
    desktop.bring_to_front()
    deadline = time.monotonic() + IDLE_TIMEOUT + 90
    while hub.api("GET", "/users/bob").json().get("servers") and time.monotonic() < deadline:
        click_picture(desktop, 0.2, 0.3)  # alice works on
        desktop.keyboard.press("Shift")
        desktop.wait_for_timeout(5000)
    assert not hub.api("GET", "/users/bob").json().get("servers"), "bob's untouched desktop was stopped"
    # alice typed all along: her server runs, as long as bob's had been idle and more.
    assert hub.api("GET", "/users/alice").json()["servers"][""]["ready"]
    assert not [line for line in hub.log_path.read_text().splitlines() if "has been idle" in line and "alice" in line]
    reported = desktop.evaluate("fetch('stats').then(r => r.json()).then(s => s.activity)")
    assert reported["reported"] >= 3 and reported["failed"] == 0, reported
