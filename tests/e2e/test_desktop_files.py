"""Files between the browser (Chromium) and a real desktop server: a dropped file and a 50 MB
file picked in the page upload to the home, a 50 MB file sent with ``hepsdesk-send`` downloads,
each with its progress shown and its bytes checked; an upload survives the network going away;
a cancelled upload, and refused ones, leave nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy
import pytest
from playwright.sync_api import expect

from .desktop_checks import wait_until
from .hubflow import wait_for_frames
from .test_desktop_server import start_desktop, stop_desktop

PORT = 18768
SIZE = 50 * 1024 * 1024
LIMIT_MB = 64

# Test-only: records every status line the transfers list shows.
WATCH_TRANSFERS = """
window.seenStatuses = [];
new MutationObserver(() => {
  for (const status of document.querySelectorAll('.transfer .status')) {
    const text = status.textContent;
    if (window.seenStatuses[window.seenStatuses.length - 1] !== text) window.seenStatuses.push(text);
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


class Desktop:
    def __init__(self, base: Path):
        self.base = base
        self.home = base / "home"
        self.data = base / "data"
        self.socket = base / "run" / "desktop.sock"
        self.url = f"http://127.0.0.1:{PORT}/"

    def leftovers(self) -> list[str]:
        return [p.name for d in (self.home, self.data) for p in d.iterdir() if p.name.startswith(".hepsdesk-upload")]

    def send(self, *paths) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "desktop_proxy.send", *map(str, paths)], capture_output=True,
                              text=True, timeout=30, env={**os.environ, "HEPSDESK_DESKTOP_CONTROL": str(self.socket)})


@pytest.fixture(scope="module")
def desktop():
    desktop = Desktop(Path(tempfile.mkdtemp(prefix="hepsdesk-files-")))
    desktop.home.mkdir()
    desktop.data.mkdir()
    env = {**os.environ, "HOME": str(desktop.home), "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1",
           "HEPSDESK_DESKTOP_CONTROL": str(desktop.socket), "HEPSDESK_DESKTOP_FILE_ROOTS": str(desktop.data)}
    process = start_desktop(PORT, env, "--size", "1280x720", "--file-limit", str(LIMIT_MB))
    yield desktop
    stop_desktop(process)
    assert not desktop.leftovers(), "the desktop removes unfinished uploads when it stops"
    shutil.rmtree(desktop.base, ignore_errors=True)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("laptop") / "scan-0042.h5"
    path.write_bytes(os.urandom(SIZE))
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def open_page(browser, desktop: Desktop):
    context = browser.new_context(viewport={"width": 1280, "height": 720}, accept_downloads=True)
    context.add_init_script(WATCH_TRANSFERS)
    page = context.new_page()
    page.goto(desktop.url)
    wait_for_frames(page, 1, timeout_s=30)
    return context, page



def progress_shown(page, size: int) -> list[str]:
    """The partial progress lines the page showed ("12.0 MB of 50.0 MB"), neither 0 nor all."""
    total = f" of {size / 2**20:.1f} MB"
    return [s for s in page.evaluate("window.seenStatuses") if s.endswith(total) and not s.startswith(("0 bytes",
                                                                                                        total[4:]))]


def test_dropped_and_picked_files_upload_and_a_sent_file_downloads(desktop, browser, big_file):
    context, page = open_page(browser, desktop)

    # A file dropped on the picture (a synthetic drop with a DataTransfer, as a person's would be).
    page.evaluate("""() => {
        const transfer = new DataTransfer();
        transfer.items.add(new File(['première ligne\\n'], 'notes ü.txt', { type: 'text/plain' }));
        const screen = document.getElementById('screen');
        for (const type of ['dragenter', 'dragover', 'drop']) {
            screen.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }
    }""")
    expect(page.locator(".transfer", has_text="notes ü.txt")).to_contain_text(f"saved as {desktop.home}/notes ü.txt")
    assert (desktop.home / "notes ü.txt").read_text() == "première ligne\n"

    # 50 MB picked with the upload button's file input: in chunks, with its progress shown.
    page.set_input_files("#upload-input", str(big_file))
    expect(page.locator(".transfer", has_text=big_file.name)).to_contain_text("saved as", timeout=120_000)
    assert digest(desktop.home / big_file.name) == digest(big_file)
    assert progress_shown(page, SIZE), page.evaluate("window.seenStatuses")
    # Again: the file there is not overwritten.
    page.set_input_files("#upload-input", str(big_file))
    expect(page.locator(".transfer", has_text="scan-0042 (1).h5")).to_be_visible(timeout=120_000)
    assert digest(desktop.home / "scan-0042 (1).h5") == digest(big_file)
    assert not desktop.leftovers()

    # 50 MB sent from the desktop (hepsdesk-send in its terminal): downloads here, with progress.
    result_file = desktop.data / "reduced ∑.dat"
    shutil.copy(big_file, result_file)
    page.evaluate("window.seenStatuses = []")
    with page.expect_download(timeout=120_000) as download:
        sent = desktop.send(result_file)
    assert sent.returncode == 0 and "it downloads in the browser showing your desktop" in sent.stdout, sent
    assert download.value.suggested_filename == "reduced ∑.dat"
    saved = Path(download.value.path())
    assert saved.stat().st_size == SIZE and digest(saved) == digest(big_file)
    assert progress_shown(page, SIZE), page.evaluate("window.seenStatuses")
    context.close()


def test_an_upload_resumes_after_the_network_fails(desktop, browser):
    context, page = open_page(browser, desktop)
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    # A slow link (4 MB/s up), so the failure comes in the middle of the file.
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 5, "downloadThroughput": -1,
                                                  "uploadThroughput": 4 * 1024 * 1024})
    (desktop.data / "incoming").mkdir()
    (desktop.data / "incoming" / "resumed.bin").write_bytes(b"taken")
    size = 24 * 1024 * 1024
    page.evaluate("""([size, directory]) => {
        window.resumed = null;
        const bytes = new Uint8Array(size);
        for (let i = 0; i < size; i++) bytes[i] = i % 251;
        desktopFiles.upload(new File([bytes], 'resumed.bin'), directory).then((state) => { window.resumed = state; });
    }""", [size, str(desktop.data / "incoming")])
    assert wait_until(lambda: any(s.startswith("8.0 MB of") for s in page.evaluate("window.seenStatuses")), 60)
    cdp.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": -1})
    assert wait_until(lambda: any("retrying" in s for s in page.evaluate("window.seenStatuses")), 30)
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": -1})
    state = wait_until(lambda: page.evaluate("window.resumed"), 90)
    assert state and state["done"], page.evaluate("window.seenStatuses")
    assert state["path"] == str(desktop.data / "incoming" / "resumed (1).bin")
    expected = (numpy.arange(size) % 251).astype(numpy.uint8).tobytes()
    assert Path(state["path"]).read_bytes() == expected
    context.close()


def test_a_cancelled_upload_and_refused_transfers_leave_nothing(desktop, browser, big_file):
    context, page = open_page(browser, desktop)
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 5, "downloadThroughput": -1,
                                                  "uploadThroughput": 10 * 1024 * 1024})
    before = sorted(p.name for p in desktop.home.iterdir())
    page.set_input_files("#upload-input", str(big_file))
    item = page.locator(".transfer").last
    assert wait_until(lambda: desktop.leftovers(), 30), "the upload started"
    item.get_by_role("button", name=f"Cancel {big_file.name}").click()
    expect(item).to_contain_text("cancelled")
    assert wait_until(lambda: not desktop.leftovers(), 10), "its part file is removed"
    assert sorted(p.name for p in desktop.home.iterdir()) == before
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": -1})

    def create(**body):
        return page.request.post(desktop.url + "api/files/uploads", data=body)

    for body, status, message in (
            ({"name": "x", "size": 1, "directory": "/etc"}, 403, "/etc is outside your home and data directories"),
            ({"name": "x", "size": 1, "directory": str(desktop.home / "link-out")}, 403, "is outside your home"),
            ({"name": "../escape", "size": 1}, 400, "is not a file name"),
            ({"name": "huge.h5", "size": (LIMIT_MB + 1) << 20}, 413,
             f"huge.h5 is {LIMIT_MB + 1}.0 MB; the desktop takes files of at most {LIMIT_MB}.0 MB"),
            ({"name": "x", "size": 1, "directory": str(desktop.home / "nowhere")}, 404, "there is no directory")):
        if "link-out" in body.get("directory", ""):
            (desktop.home / "link-out").symlink_to("/tmp")
        answer = create(**body)
        assert answer.status == status and message in answer.json()["message"], (body, answer.status, answer.text())
    (desktop.home / "link-out").unlink()
    # A chunk that is not the next one is refused, and the upload can be cancelled.
    upload = create(name="chunks.bin", size=10).json()
    wrong = page.request.put(desktop.url + f"api/files/uploads/{upload['id']}?offset=5", data=b"12345")
    assert wrong.status == 409 and "starts at 0, not 5" in wrong.json()["message"]
    assert page.request.delete(desktop.url + f"api/files/uploads/{upload['id']}").status == 204
    assert sorted(p.name for p in desktop.home.iterdir()) == before and not desktop.leftovers()

    # hepsdesk-send: only the user's own places, and files that are there.
    refused = desktop.send("/etc/hostname", desktop.home / "missing.txt")
    assert refused.returncode == 1
    assert "/etc/hostname is outside your home and data directories" in refused.stderr
    assert f"there is no file {desktop.home}/missing.txt" in refused.stderr
    context.close()
