"""The desktop as a daily workplace, in Chromium, with the real desktop in a dev-cloud VM behind
the hub: a German keyboard, a dead key and pinyin type what they say; text and PNGs cross the
clipboard both ways; a dropped file and 50 MB files go up and down with their bytes intact, a
cancelled upload leaves nothing; a tone played in the VM is heard at its frequency; a reload
and a network failure resume the same desktop; the desktop as a JupyterLab tab; the desktop
shared with a colleague (three browsers: owner, colleague, outsider), who types only with
control and reaches nothing else; and the idle culler stops the untouched desktop while it
keeps the one in use.

Everything a person does here goes through the hub's proxy and the Jupyter server in the VM,
as it does for a user: the local tests (test_desktop_clipboard.py, test_desktop_files.py,
test_desktop_sound.py, test_desktop_reconnect.py, test_desktop_input.py) cover the details.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import time
import wave
from pathlib import Path

import cv2
import numpy
import pytest
from playwright.sync_api import expect

from ..conftest import SESSION, running_hub
from .desktop_checks import LISTEN, clipboard_image, hears, route_through
from .hubflow import click_picture, new_context, pixel, sign_in, wait_for_frames, wait_for_lab
from .shaper import Shaper

pytestmark = pytest.mark.devcloud

IDLE_TIMEOUT = 60  # the profile's: the desktop reports input every 10 s
# As jupyterhub_config.py has them: HEPS's instrument scientists may be invited to HEPS users'
# desktops; support may ask to join any desktop.
STAFF_ROLES = [
    {"name": "heps-instrument-scientist", "groups": ["heps-staff"],
     "scopes": ["read:users:name!group=heps-users", "custom:hepsdesk:shared-desktops!group=heps-users"]},
    {"name": "desktop-support", "groups": ["hepsdesk-support"],
     "scopes": ["read:users:name", "custom:hepsdesk:desktop-support"]},
]
SIZE = 50 * 1024 * 1024
TONE_HZ = 1000


@pytest.fixture(scope="module")
def workplace(devcloud, browser, tmp_path_factory):
    profiles = [{"slug": "workplace", "display_name": "Workplace desktop", "image": "hepsdesk-desktop",
                 "flavor": "c1.small", "idle_timeout": IDLE_TIMEOUT}]
    directory = tmp_path_factory.mktemp("workplace-hub")
    (directory / "roles.json").write_text(json.dumps(STAFF_ROLES))
    with running_hub(devcloud, directory, (18620, 18621, 19620), profiles,
                     HEPSDESK_GROUP_ROLES_FILE=str(directory / "roles.json")) as hub:
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


def png(colour: tuple[int, int, int]) -> bytes:
    pixels = numpy.zeros((24, 40, 3), numpy.uint8)
    pixels[:, :20] = colour
    return cv2.imencode(".png", pixels)[1].tobytes()


def same_picture(data: bytes | None, expected: bytes) -> bool:
    if not data:
        return False
    decoded = cv2.imdecode(numpy.frombuffer(data, numpy.uint8), cv2.IMREAD_COLOR)
    return decoded is not None and numpy.array_equal(decoded, cv2.imdecode(numpy.frombuffer(expected, numpy.uint8),
                                                                             cv2.IMREAD_COLOR))


def wait_for_picture(path: Path, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = path.read_bytes() if path.exists() else b""  # the shell makes the file before xclip writes
        if data and cv2.imdecode(numpy.frombuffer(data, numpy.uint8), cv2.IMREAD_COLOR) is not None:
            return data
        time.sleep(0.2)
    raise AssertionError(f"{path} is not a picture")



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
    wait_for(home / name, "ß€ê你好世界".encode())  # the content: the shell makes the file first


def test_the_clipboard_crosses_both_ways(workplace):
    _, _, desktop, home = workplace
    desktop.evaluate("navigator.clipboard.writeText('from the laptop: grüße 你好')")
    desktop.evaluate("window.dispatchEvent(new Event('focus'))")
    desktop.wait_for_function("window.hepsdesk.clipboard.toDesktop >= 1", timeout=10_000)
    run(desktop, "xclip -selection clipboard -o > ~/pasted.txt")
    wait_for(home / "pasted.txt", "from the laptop: grüße 你好".encode())

    run(desktop, "printf 'from the VM: ß' | xclip -selection clipboard")
    deadline = time.monotonic() + 15
    while desktop.evaluate("navigator.clipboard.readText()") != "from the VM: ß" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert desktop.evaluate("navigator.clipboard.readText()") == "from the VM: ß"

    # A PNG each way.
    green = png((0, 255, 0))
    sent = desktop.evaluate("window.hepsdesk.clipboard.toDesktop")
    desktop.evaluate("""async (bytes) => {
        const blob = new Blob([new Uint8Array(bytes)], { type: 'image/png' });
        await navigator.clipboard.write([new ClipboardItem({ 'image/png': blob })]);
        window.dispatchEvent(new Event('focus'));
    }""", list(green))
    desktop.wait_for_function(f"window.hepsdesk.clipboard.toDesktop > {sent}", timeout=10_000)
    run(desktop, "xclip -selection clipboard -t image/png -o > ~/pasted.png")
    assert same_picture(wait_for_picture(home / "pasted.png"), green)
    blue = png((255, 0, 0))
    (home / "blue.png").write_bytes(blue)
    (home / "blue.png").chmod(0o644)
    run(desktop, "xclip -selection clipboard -t image/png -i < ~/blue.png")
    deadline = time.monotonic() + 15
    while not same_picture(clipboard_image(desktop), blue) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert same_picture(clipboard_image(desktop), blue)


def test_50_mb_files_go_up_and_down_intact(workplace, tmp_path):
    _, _, desktop, home = workplace
    # A file dropped on the picture.
    desktop.evaluate("""() => {
        const transfer = new DataTransfer();
        transfer.items.add(new File(['dropped on the desktop\\n'], 'dropped.txt'));
        const screen = document.getElementById('screen');
        for (const type of ['dragenter', 'dragover', 'drop']) {
            screen.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }
    }""")
    assert wait_for(home / "dropped.txt") == b"dropped on the desktop\n"

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

    # Cancelled half-way (a slow link): nothing of it stays.
    cdp = desktop.context.new_cdp_session(desktop)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 5, "downloadThroughput": -1,
                                                  "uploadThroughput": 4 * 1024 * 1024})
    cancelled = tmp_path / "cancelled.bin"
    cancelled.write_bytes(os.urandom(24 * 1024 * 1024))
    desktop.set_input_files("#upload-input", str(cancelled))
    deadline = time.monotonic() + 60
    while not list(home.glob(".hepsdesk-upload-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(home.glob(".hepsdesk-upload-*")), "the upload started"
    item = desktop.locator(".transfer", has_text="cancelled.bin")
    item.get_by_role("button", name="Cancel cancelled.bin").click()
    expect(item).to_contain_text("cancelled")
    deadline = time.monotonic() + 15
    while list(home.glob(".hepsdesk-upload-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list(home.glob(".hepsdesk-upload-*")) and not (home / "cancelled.bin").exists()
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": -1})


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
    desktop.evaluate(LISTEN)
    run(desktop, "paplay ~/tone.wav")
    assert hears(desktop, TONE_HZ, timeout=15), desktop.evaluate("window.loudest()")


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


def test_a_network_failure_resumes_the_same_desktop(workplace):
    """The media port blocked at a relay in between (the one fake: loopback cannot fail on demand)."""
    _, _, desktop, _ = workplace
    answer = desktop.evaluate("window.hepsdesk.pc.remoteDescription.sdp")
    vm_address = re.search(r"a=candidate:\S+ \d+ udp \d+ (127\.\d+\.\d+\.\d+) \d+ typ host", answer).group(1)
    page = desktop.context.new_page()
    with Shaper(listen=vm_address) as link:
        route_through(page, link, host=vm_address)
        page.goto(desktop.url)
        wait_for_frames(page, 1, timeout_s=60)
        before = sorted(w["id"] for w in page.evaluate("fetch('api/windows').then(r => r.json()).then(j => j.windows)"))
        link.blocked = True
        deadline = time.monotonic() + 30
        while not page.evaluate("window.hepsdesk.outages.length") and time.monotonic() < deadline:
            time.sleep(0.05)
        link.blocked = False
        assert page.evaluate("window.hepsdesk.outages.length"), "the page noticed"
        deadline = time.monotonic() + 15
        while page.evaluate("window.hepsdesk.outages")[-1]["resumedAt"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        lost = page.evaluate("window.hepsdesk.outages")[-1]
        assert lost["resumedAt"] is not None and (lost["resumedAt"] - lost["noticedAt"]) / 1000 < 2.0, lost
        after = sorted(w["id"] for w in page.evaluate("fetch('api/windows').then(r => r.json()).then(j => j.windows)"))
        assert after == before, "the same desktop, with its windows"
    page.close()
    desktop.bring_to_front()


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


def share_page(lab, hub_url: str):
    """alice's page where she shares her desktop (the desktop's people button links to it)."""
    page = lab.context.new_page()
    page.goto(f"{hub_url}/hub/hepsdesk/shares/alice/")
    return page


def share(page, kind: str, name: str = "") -> str:
    page.select_option("#share-kind", kind)
    page.fill("#share-name", name)
    page.click("#share-button")
    expect(page.locator("#share-message")).to_be_visible()
    return page.locator("#share-message").inner_text()


def participants(page) -> dict[str, str]:
    """name -> role as this page's people list has them."""
    return {p["name"]: p["role"] for p in page.evaluate("window.hepsdesk.sharing")["participants"]}


def type_as(page, home: Path, name: str) -> bool:
    """Type a command into alice's terminal from ``page``; whether it ran (within 3 s)."""
    click_picture(page, 0.2, 0.3)
    page.keyboard.type(f"touch ~/{name}")
    page.keyboard.press("Enter")
    try:
        wait_for(home / name, timeout=3)
        return True
    except AssertionError:
        return False


def test_a_colleague_sees_the_desktop_and_types_only_with_control(workplace, browser):
    hub, lab, desktop, home = workplace
    # dave, alice's colleague (a group in common), and erin, an outsider (another facility's user),
    # have signed in once.
    for name, group in (("dave", "heps-users"), ("erin", "csns-users")):
        hub.oidc.set_user(name, hub.users.setdefault(name, secrets.token_urlsafe(12)), groups=[group],
                          proposals=[f"P-{name}"])
    dave, erin = new_context(browser), new_context(browser)
    colleague, outsider = dave.new_page(), erin.new_page()
    sign_in(colleague, hub.url, "dave", hub.users["dave"], next_path="/hub/hepsdesk/desktops/alice/")
    expect(colleague.locator("#share-refused")).to_contain_text("alice has not shared their desktop with you")
    sign_in(outsider, hub.url, "erin", hub.users["erin"], next_path="/hub/hepsdesk/desktops/alice/")
    expect(outsider.locator("#share-refused")).to_contain_text("alice has not shared their desktop with you")

    shares = share_page(lab, hub.url)
    assert share(shares, "user", "dave") == "Shared with dave."
    assert "is in none of alice's groups" in share(shares, "user", "erin")  # the policy: no group in common
    assert "There is no user 'nobody-here'" in share(shares, "user", "nobody-here")

    colleague.reload()
    wait_for_frames(colleague, 1, timeout_s=60)
    colleague.wait_for_function("window.hepsdesk.inputReady", timeout=20_000)
    # Everyone sees who is there: dave watches; alice's page names him, with a notice.
    desktop.wait_for_function("window.hepsdesk.sharing.participants.some(p => p.name === 'dave')", timeout=5000)
    assert participants(colleague) == {"alice": "owner", "dave": "viewer"}
    assert "dave joined" in desktop.evaluate("window.hepsdesk.notices")
    expect(desktop.locator("#share-banner")).to_contain_text("Shared with dave")

    # View-only: dave's keys and clicks reach nothing, until alice hands over control...
    assert not type_as(colleague, home, "typed-by-dave-before")
    colleague.click("#ask-control-button")
    desktop.wait_for_function("window.hepsdesk.sharing.participants.some(p => p.name === 'dave' && p.asking)",
                              timeout=5000)
    expect(desktop.locator("#people")).to_be_visible()  # the request opens the owner's list
    desktop.locator(".participant[data-name='dave']").get_by_role("button", name="Give control").click()
    colleague.wait_for_function("window.hepsdesk.sharing.control === window.hepsdesk.sharing.you", timeout=5000)
    desktop.wait_for_function("(s => s.participants.some(p => p.name === 'dave' && p.id === s.control))"
                              "(window.hepsdesk.sharing)", timeout=5000)
    expect(desktop.locator("#share-banner")).to_contain_text("dave has control")
    assert type_as(colleague, home, "typed-by-dave-with-control")
    # ...and takes it back with her shortcut.
    desktop.bring_to_front()
    desktop.keyboard.press("Control+Alt+Shift+T")
    colleague.wait_for_function("window.hepsdesk.sharing.control === null", timeout=5000)
    assert not type_as(colleague, home, "typed-by-dave-after")
    # A page that sends anyway (its own script on the data channel) is stopped by the desktop.
    colleague.evaluate("""() => {
        const send = (m) => window.hepsdesk.inputChannel.send(JSON.stringify({v: 1, ...m}));
        send({type: 'text', text: 'touch ~/forced-by-dave'});
        send({type: 'key', keysym: 0xff0d, down: true});
        send({type: 'key', keysym: 0xff0d, down: false});
    }""")
    desktop.wait_for_function("fetch('stats').then(r => r.json()).then(s => s.input.without_control >= 3)",
                              timeout=5000)
    time.sleep(1)
    assert not (home / "forced-by-dave").exists()

    # The desktop only: alice's JupyterLab, files and terminals are closed to dave.
    for path in ("lab", "lab/terminals/1", "api/contents", "api/terminals", "api/kernels"):
        assert colleague.request.get(f"{hub.url}/user/alice/{path}").status == 403, path

    # The outsider is still refused, with the reason; and so is a websocket of hers straight to the relay.
    outsider.reload()
    expect(outsider.locator("#share-refused")).to_contain_text("alice has not shared their desktop with you")
    closed = outsider.evaluate("""() => new Promise((resolve) => {
        const ws = new WebSocket(location.href.replace('http', 'ws') + 'ws');
        ws.onclose = (event) => resolve({code: event.code, reason: event.reason});
    })""")
    assert closed == {"code": 4403, "reason": "alice has not shared their desktop with you. Ask them to invite you."}

    # Revoking disconnects dave within 2 s.
    row = shares.locator("tr[data-who='dave']")
    expect(row).to_contain_text("dave")
    started = time.monotonic()
    row.get_by_role("button", name="Revoke").click()
    colleague.wait_for_function("window.hepsdesk.ended !== null", timeout=2000)
    desktop.wait_for_function("!window.hepsdesk.sharing.participants.some(p => p.name === 'dave')", timeout=2000)
    assert time.monotonic() - started < 2.0
    expect(colleague.locator("#status")).to_contain_text("alice stopped sharing their desktop with you")
    colleague.reload()
    expect(colleague.locator("#share-refused")).to_contain_text("has not shared their desktop with you")

    # A single-use link: dave opens it and sees the desktop again; erin, with the same link, is refused.
    share(shares, "link")
    link = shares.locator("#share-link").input_value()
    assert "?key=" in link
    colleague.goto(link)
    wait_for_frames(colleague, 1, timeout_s=60)
    assert "key=" not in colleague.url  # the key left the address bar
    outsider.goto(link)
    expect(outsider.locator("#share-refused")).to_contain_text("already used")

    # Support joins without an invitation only once alice lets them in; an instrument scientist of
    # another facility's group may be invited.
    for name, groups in (("sam", ["csns-users", "hepsdesk-support"]), ("ivan", ["csns-users", "heps-staff"])):
        hub.oidc.set_user(name, hub.users.setdefault(name, secrets.token_urlsafe(12)), groups=groups)
    sam = new_context(browser)
    helper = sam.new_page()
    sign_in(helper, hub.url, "sam", hub.users["sam"], next_path="/hub/hepsdesk/desktops/alice/")
    expect(helper.locator("#status")).to_contain_text("Waiting for the owner to let you in")
    waiting = desktop.locator(".participant[data-name='sam']")
    expect(waiting).to_contain_text("asks to join")
    assert helper.evaluate("window.hepsdesk.pc") is None  # no picture before alice says yes
    waiting.get_by_role("button", name="Let in").click()
    wait_for_frames(helper, 1, timeout_s=30)
    assert participants(helper) == {"alice": "owner", "dave": "viewer", "sam": "support"}
    sam.close()
    ivan = new_context(browser)
    sign_in(ivan.new_page(), hub.url, "ivan", hub.users["ivan"], next_path="/hub/home")
    assert share(shares, "user", "ivan") == "Shared with ivan."
    ivan.close()

    # alice ends the sharing from the desktop: dave is disconnected.
    if desktop.locator("#people").is_hidden():
        desktop.click("#people-button")
    desktop.click("#end-sharing-button")
    colleague.wait_for_function("window.hepsdesk.ended !== null", timeout=2000)
    # Bad input, each told clearly: an owner who is offline, someone else's share page, no such
    # user, an anonymous browser.
    own_shares = dave.new_page()
    own_shares.goto(f"{hub.url}/hub/hepsdesk/shares/dave/")
    assert share(own_shares, "user", "alice") == "Shared with alice."
    offline = lab.context.new_page()
    offline.goto(f"{hub.url}/hub/hepsdesk/desktops/dave/")
    expect(offline.locator("#share-refused")).to_contain_text("dave's desktop is not running now")
    offline.close()
    assert outsider.request.get(f"{hub.url}/hub/hepsdesk/shares/alice/").status == 403
    outsider.goto(f"{hub.url}/hub/hepsdesk/desktops/nobody-here/")
    expect(outsider.locator("#share-refused")).to_contain_text("There is no user nobody-here on this hub.")
    anonymous = new_context(browser)
    stranger = anonymous.new_page()
    stranger.goto(f"{hub.url}/hub/hepsdesk/desktops/alice/")
    assert "/login" in stranger.url  # sent to sign in first
    closed = stranger.evaluate("""(url) => new Promise((resolve) => {
        const ws = new WebSocket(url);
        ws.onopen = () => resolve('open');
        ws.onclose = (event) => resolve(event.code);
    })""", f"{hub.url.replace('http', 'ws', 1)}/hub/hepsdesk/desktops/alice/ws")
    assert closed == 1006, closed  # refused before the websocket opens
    anonymous.close()

    audit = [line for line in hub.log_path.read_text().splitlines() if "sharing audit" in line]
    for event in ('"share"', '"join"', '"control-given"', '"control-taken"', '"revoke"', '"link-used"'):
        assert any(f'"event": {event}' in line for line in audit), event
    dave.close()
    erin.close()
    shares.close()


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
