"""What the desktop's tests check with, in one place: waiting for a condition, the environment
of a program running on a desktop, what the browser's clipboard holds, the loudest tone the page
plays, and the media of a page routed through a ``Shaper`` (the one fake: a link that fails)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from .shaper import Shaper


def wait_until(condition, timeout: float = 10, interval: float = 0.1):
    """``condition()``'s first true value within ``timeout`` seconds, else its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval)
    return condition()


def program_environment(program: str) -> dict[str, str]:
    """The environment of the newest running ``program`` (a desktop's panel or terminal: its
    session's D-Bus, sound server and XDG directories)."""
    pid = subprocess.run(["pgrep", "-n", "-x", program], capture_output=True, text=True).stdout.strip()
    assert pid, f"{program} runs"
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def clipboard_image(page) -> bytes | None:
    """The PNG on the browser's clipboard, if there is one."""
    data = page.evaluate("""async () => {
        for (const item of await navigator.clipboard.read()) {
            if (item.types.includes('image/png')) {
                return Array.from(new Uint8Array(await (await item.getType('image/png')).arrayBuffer()));
            }
        }
        return null;
    }""")
    return bytes(data) if data is not None else None


# An analyser on the page's sound: window.loudest() is the loudest frequency and its level.
LISTEN = """() => {
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
}"""


def hears(page, hz: float, timeout: float = 10) -> dict | None:
    """Whether the page's sound has ``hz`` loudest (above -60 dB) within ``timeout`` seconds."""
    def loud():
        loudest = page.evaluate("window.loudest()")
        return loudest if loudest["db"] > -60 and abs(loudest["hz"] - hz) < 20 else None
    return wait_until(loud, timeout)


def route_through(page, link: Shaper, host: str = "127.0.0.1", pattern: str = "**/ws") -> list:
    """Route the page's signalling so that its media crosses ``link`` (the desktop's answer
    names the link's port on ``host``); the page's websockets, to close one."""
    sockets = []

    def route(ws):
        server = ws.connect_to_server()
        ws.on_message(server.send)

        def to_page(message):
            data = json.loads(message)
            if data.get("type") == "answer":
                data["sdp"] = link.rewrite_answer(data["sdp"], host=host)
            ws.send(json.dumps(data))
        server.on_message(to_page)
        sockets.append(ws)
    page.route_web_socket(pattern, route)
    return sockets
