"""The desktop's clipboard, kept in step with the browser's: text and PNG images, both ways.

The desktop side is X's ``CLIPBOARD`` selection. A watcher thread asks the X server (XFixes)
to say whenever the selection gets a new owner, that is whenever a program on the desktop
copies something; the desktop server then reads what was copied and tells each open page
(``pages.py``), which fetches it over HTTP (``GET api/clipboard``) and puts it on the
browser's clipboard. The other way, the page sends what the browser holds
(``PUT api/clipboard``), and it is offered on the desktop until a program there copies
something else. Reading and offering go through ``xclip``, which serves the selection from a
process of its own.

Both ways carry at most ``limit`` bytes (the page tells the person when more was copied);
text must be UTF-8 and an image a PNG. What this side put on the clipboard is not announced
back to the page it came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import select
import shutil
import threading
from dataclasses import dataclass

from tornado import web
from Xlib import display as xlib_display
from Xlib import error as xerror
from Xlib.ext import xfixes

from .control import CrossSite, check_same_site
from .pages import Pages
from .xdisplay import without_signals

log = logging.getLogger("desktop_proxy")

LIMIT = 16 << 20  # bytes of text or image, each way
TEXT = "text/plain;charset=utf-8"
PNG = "image/png"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
XCLIP_TIMEOUT = 5.0  # seconds a program that holds the selection gets to hand it over


class ClipboardError(RuntimeError):
    """The clipboard cannot be read or written (``kind`` says why, for the page)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Content:
    """What is on a clipboard: ``kind`` "text" (UTF-8) or "image" (PNG)."""

    kind: str
    data: bytes

    @property
    def mime(self) -> str:
        return TEXT if self.kind == "text" else PNG

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.kind.encode() + b"\0" + self.data).hexdigest()

    def describe(self) -> dict:
        return {"kind": self.kind, "size": len(self.data), "digest": self.digest}

    @classmethod
    def checked(cls, mime: str, data: bytes, limit: int = LIMIT) -> Content:
        """Content from the browser, or ``ClipboardError`` saying what is wrong with it."""
        base = mime.split(";")[0].strip().lower()
        if len(data) > limit:
            raise ClipboardError("too-large", f"the clipboard holds {megabytes(len(data))}; the desktop takes "
                                 f"at most {megabytes(limit)}")
        if base == "text/plain":
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                raise ClipboardError("bad-text", "the text is not UTF-8") from None
            return cls("text", data)
        if base == PNG:
            if not data.startswith(PNG_MAGIC):
                raise ClipboardError("bad-image", "the image is not a PNG")
            return cls("image", data)
        raise ClipboardError("unsupported", f"the desktop's clipboard takes text and PNG images, not {base or 'this'}")


def megabytes(size: int) -> str:
    return f"{size / (1 << 20):.1f} MB"


class DesktopClipboard:
    """The X display ``display_name``'s CLIPBOARD selection. The open ``pages`` are told
    ``{"type": "clipboard", "kind", "size", "digest"}`` when a program on the desktop copied
    something, or ``"error"`` and ``"message"`` when it cannot be passed on."""

    def __init__(self, display_name: str, pages: Pages, limit: int = LIMIT):
        if not shutil.which("xclip"):
            raise ClipboardError("unavailable", "xclip is not installed on the desktop")
        self.display_name = display_name
        self.limit = limit
        self.pages = pages
        self.activity = None  # an ActivityReporter: pasting is the person's use of the desktop
        self.copied = 0  # what programs on the desktop copied (and was announced)
        self.pasted = 0  # what the browser put on the desktop's clipboard
        self._ours = ""  # the digest of what this side put there last
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._watching = threading.Event()
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        """Start watching; returns once the X server reports copies (at most a few seconds)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=without_signals(self._watch), name="clipboard", daemon=True)
        self._thread.start()
        await self._loop.run_in_executor(None, self._watching.wait, 5.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    async def read(self) -> Content | None:
        """What the desktop's clipboard holds (an image before text), or None when empty."""
        targets = (await self._xclip("-o", "-t", "TARGETS")).decode("utf-8", "replace").split()
        if not targets:
            return None
        if PNG in targets:
            return Content("image", await self._xclip("-o", "-t", PNG))
        for target in ("UTF8_STRING", "text/plain;charset=utf-8", "STRING", "TEXT", "text/plain"):
            if target in targets:
                return Content("text", await self._xclip("-o", "-t", target))
        return None

    async def write(self, content: Content) -> None:
        """Offer ``content`` on the desktop (xclip keeps serving it until something else is copied)."""
        self._ours = content.digest
        args = ["-i", "-t", PNG] if content.kind == "image" else ["-i"]
        await self._xclip(*args, data=content.data)
        self.pasted += 1
        if self.activity is not None:
            self.activity.touch()

    async def _xclip(self, *args: str, data: bytes | None = None) -> bytes:
        command = ["xclip", "-display", self.display_name, "-selection", "clipboard", *args]
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE if data is not None else asyncio.subprocess.DEVNULL,
            # Offering, xclip leaves a child serving the selection: it must not hold our pipes.
            stdout=asyncio.subprocess.DEVNULL if data is not None else asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        try:
            if data is not None:
                await asyncio.wait_for(process.communicate(data), XCLIP_TIMEOUT)
                if process.returncode:
                    raise ClipboardError("unavailable", "the desktop's clipboard could not be set")
                return b""
            output = await asyncio.wait_for(self._read_at_most(process.stdout), XCLIP_TIMEOUT)
            await asyncio.wait_for(process.wait(), XCLIP_TIMEOUT)
        except TimeoutError:
            raise ClipboardError("timeout", "the program holding the desktop's clipboard did not hand it over "
                                 f"within {XCLIP_TIMEOUT:g} s") from None
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        return output if process.returncode == 0 else b""  # 1: nothing there, or not as that target

    async def _read_at_most(self, stream: asyncio.StreamReader) -> bytes:
        chunks, size = [], 0
        while chunk := await stream.read(1 << 16):
            size += len(chunk)
            if size > self.limit:
                raise ClipboardError("too-large", f"the desktop's clipboard holds more than {megabytes(self.limit)}, "
                                     "more than the browser is sent")
            chunks.append(chunk)
        return b"".join(chunks)

    # The watcher: a thread with an X connection of its own.

    def _watch(self) -> None:
        try:
            x = xlib_display.Display(self.display_name)
        except Exception as e:  # the display went away: no clipboard, the desktop goes on
            log.warning("clipboard: cannot watch the display: %s", e)
            return
        try:
            x.xfixes_query_version()
            x.xfixes_select_selection_input(x.screen().root, x.intern_atom("CLIPBOARD"),
                                            xfixes.XFixesSetSelectionOwnerNotifyMask)
            x.sync()
            self._watching.set()
            while not self._stop.is_set():
                readable, _, _ = select.select([x.fileno()], [], [], 0.5)
                if not readable and not x.pending_events():
                    continue
                changed = False
                owner_changed = x.extension_event.SetSelectionOwnerNotify  # (code, sub-code): the class is a copy
                for _ in range(x.pending_events()):
                    event = x.next_event()
                    changed |= (event.type, getattr(event, "sub_code", None)) == owner_changed
                if changed:
                    asyncio.run_coroutine_threadsafe(self._changed(), self._loop)
        except (xerror.ConnectionClosedError, OSError) as e:
            if not self._stop.is_set():
                log.warning("clipboard: lost the display: %s", e)
        finally:
            self._watching.set()
            with contextlib.suppress(Exception):
                x.close()

    async def _changed(self) -> None:
        try:
            content = await self.read()
        except ClipboardError as e:
            return self.pages.announce({"type": "clipboard", "error": e.kind, "message": str(e)})
        if content is None or content.digest == self._ours:
            return
        self._ours = ""  # copied again on the desktop later: announce it
        self.copied += 1
        self.pages.announce({"type": "clipboard", **content.describe()})

    def stats(self) -> dict:
        return {"copied": self.copied, "pasted": self.pasted, "limit": self.limit}


@web.stream_request_body
class ClipboardHandler(web.RequestHandler):
    """``GET api/clipboard``: what the desktop's clipboard holds (204 when empty);
    ``PUT api/clipboard``: put text (text/plain, UTF-8) or a PNG (image/png) on it."""

    def initialize(self, clipboard: DesktopClipboard | None):
        self.clipboard = clipboard
        self.chunks: list[bytes] = []
        self.size = 0

    def set_default_headers(self):
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def check_xsrf_cookie(self):
        pass  # the Jupyter server in front checks the user and the XSRF token

    def prepare(self):
        check_same_site(self.request)
        if self.clipboard is None:
            raise ClipboardError("unavailable", "this desktop has no clipboard (xclip is not installed)")
        if self.request.method == "PUT":
            limit = self.clipboard.limit
            declared = int(self.request.headers.get("Content-Length", "0") or 0)
            if declared > limit:
                raise ClipboardError("too-large", f"the clipboard holds {megabytes(declared)}; the desktop takes at "
                                     f"most {megabytes(limit)}")
            self.request.connection.set_max_body_size(limit + 1)

    def data_received(self, chunk: bytes):
        self.size += len(chunk)
        if self.size <= self.clipboard.limit + 1:
            self.chunks.append(chunk)

    async def get(self):
        content = await self.clipboard.read()
        if content is None:
            self.set_status(204)
            return
        self.set_header("Content-Type", content.mime)
        self.set_header("Content-Disposition", "attachment")  # never shown as a page of the server's
        self.write(content.data)

    async def put(self):
        content = Content.checked(self.request.headers.get("Content-Type", ""), b"".join(self.chunks),
                                  self.clipboard.limit)
        await self.clipboard.write(content)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.write(content.describe())

    def write_error(self, status_code: int, **kwargs):
        error = kwargs.get("exc_info", (None, None))[1]
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        if isinstance(error, ClipboardError):
            self.set_status(CLIPBOARD_STATUS.get(error.kind, 500))
            self.finish({"error": error.kind, "message": str(error)})
        elif isinstance(error, CrossSite):
            self.set_status(403)
            self.finish({"error": "cross-site", "message": str(error)})
        else:
            self.finish({"error": "failed", "message": "the clipboard could not be used; the desktop's log says why"})

    def log_exception(self, typ, value, tb):
        if not isinstance(value, ClipboardError | CrossSite):
            super().log_exception(typ, value, tb)


CLIPBOARD_STATUS = {"too-large": 413, "unsupported": 415, "bad-text": 400, "bad-image": 400,
                    "unavailable": 503, "timeout": 504}
