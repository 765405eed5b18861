"""Files between the browser and the desktop, over HTTP through the server proxy (the WebRTC
data channel carries 1-2.5 MB/s; this carries what the link does).

Uploads (a file dropped on the page, or picked), in chunks, resumable after a network failure::

    POST   api/files/uploads            {"name", "size", "directory"?} -> 201 the upload
    PUT    api/files/uploads/<id>?offset=N   the next chunk (at most ``CHUNK`` bytes) -> the upload
    GET    api/files/uploads/<id>       how much arrived (to resume)
    DELETE api/files/uploads/<id>       cancel: nothing is left

A file arrives in a hidden part file beside its destination, private to the user, and takes
its name only once complete (``name (1).ext`` when the name is taken: nothing is overwritten).
A cancelled upload, one the page left for ``IDLE`` seconds, and every one unfinished when the
desktop stops are removed. Downloads (``hepsdesk-send FILE`` in the VM, or the file manager's
"Send to my computer")::

    POST   api/files/offers             {"path"} -> 201 the offer, announced to the open pages
    GET    api/files/offers/<id>        the file, as an attachment

Both ways a file must be in the user's home or one of their data directories
(``HEPSDESK_DESKTOP_FILE_ROOTS``, colon-separated; symbolic links are followed before the
check) and at most ``limit`` bytes; an upload also needs the space on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from tornado import iostream, web

from .control import BadRequest, ControlHandler
from .pages import Pages
from .session import data_directories

log = logging.getLogger("desktop_proxy")

CHUNK = 8 << 20  # bytes of one upload request
LIMIT = 20 << 30  # bytes of one file, by default
IDLE = 15 * 60  # seconds an unfinished upload waits for its next chunk
OFFER_LIFETIME = 15 * 60  # seconds an offered file can be downloaded
READ_SIZE = 1 << 20
PART_PREFIX = ".hepsdesk-upload-"


class TransferError(Exception):
    """A transfer refused or failed; ``status`` and ``kind`` for the page, the message for the person."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind = status, kind


def size_text(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def check_name(name) -> str:
    """A file name the page may give: one path component, no control characters."""
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise TransferError(400, "bad-name", "a file needs a name")
    if "/" in name or "\0" in name or any(ord(c) < 0x20 for c in name):
        raise TransferError(400, "bad-name", f"{name[:80]!r} is not a file name (no '/' or control characters)")
    if len(name.encode("utf-8", "surrogatepass")) > 255:
        raise TransferError(400, "bad-name", "the file name is longer than 255 bytes")
    if name.startswith(PART_PREFIX):
        raise TransferError(400, "bad-name", "that name is kept for files being uploaded")
    return name


def free_name(directory: Path, name: str) -> Path:
    """``directory/name``, or ``name (1).ext``, ``name (2).ext``... when it is taken."""
    candidate = directory / name
    stem, dot, suffix = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
    number = 1
    while os.path.lexists(candidate):
        candidate = directory / f"{stem} ({number}){dot}{suffix}"
        number += 1
    return candidate


@dataclass
class Upload:
    id: str
    name: str
    directory: Path
    size: int
    part: Path
    received: int = 0
    path: Path | None = None  # where it is, once complete
    touched: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "directory": str(self.directory), "size": self.size,
                "received": self.received, "chunk": CHUNK, "done": self.path is not None,
                "path": None if self.path is None else str(self.path)}


@dataclass
class Offer:
    id: str
    path: Path
    size: int
    expires: float
    taken: bool = False  # downloaded by a page at least once

    def as_dict(self) -> dict:
        return {"type": "file-offer", "id": self.id, "name": self.path.name, "size": self.size,
                "url": f"api/files/offers/{self.id}"}


class FileTransfers:
    """The uploads and offered downloads of one desktop; offers are announced to its ``pages``."""

    def __init__(self, home: Path, pages: Pages, roots: list[Path] = (), limit: int = LIMIT):
        self.home = home
        self.activity = None  # an ActivityReporter: a transfer is the person's use of the desktop
        self.roots = [Path(os.path.realpath(r)) for r in [home, *roots]]
        self.limit = limit
        self.pages = pages
        self.uploads: dict[str, Upload] = {}
        self.offers: dict[str, Offer] = {}
        self.uploaded = 0
        self.downloaded = 0
        self._janitor: asyncio.Task | None = None

    @classmethod
    def from_environment(cls, pages: Pages, limit: int = LIMIT) -> FileTransfers:
        return cls(Path.home(), pages, [Path(p) for p in data_directories()], limit)

    def start(self) -> None:
        self._janitor = asyncio.get_running_loop().create_task(self._sweep())

    async def stop(self) -> None:
        """Remove every unfinished upload's part file (the desktop is going away)."""
        if self._janitor is not None:
            self._janitor.cancel()
        for upload in list(self.uploads.values()):
            await self.cancel(upload.id)

    def allowed(self, path: Path) -> Path:
        """``path`` made real, if it is inside the home or a data directory."""
        real = Path(os.path.realpath(path))
        if not any(real == root or root in real.parents for root in self.roots):
            places = ", ".join(str(r) for r in self.roots)
            raise TransferError(403, "outside", f"{path} is outside your home and data directories ({places})")
        return real

    # Uploads.

    async def create_upload(self, name, size, directory=None) -> Upload:
        name = check_name(name)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise TransferError(400, "bad-size", "'size' must be the file's size in bytes")
        if size > self.limit:
            raise TransferError(413, "too-large", f"{name} is {size_text(size)}; the desktop takes files of at most "
                                f"{size_text(self.limit)}")
        if directory is not None and not isinstance(directory, str):
            raise TransferError(400, "bad-directory", "'directory' must be a path")
        where = Path(directory) if directory else self.home
        if not where.is_absolute():
            where = self.home / where
        real = self.allowed(where)
        if not real.is_dir():
            raise TransferError(404, "no-directory", f"there is no directory {where}")
        if not os.access(real, os.W_OK | os.X_OK):
            raise TransferError(403, "not-writable", f"you may not write to {where}")
        free = await asyncio.to_thread(lambda: shutil.disk_usage(real).free)
        if size > free:
            raise TransferError(507, "no-space", f"{name} is {size_text(size)}, but {where} has only "
                                f"{size_text(free)} free")
        upload_id = secrets.token_hex(8)
        part = real / f"{PART_PREFIX}{upload_id}"
        fd = await asyncio.to_thread(os.open, part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        upload = self.uploads[upload_id] = Upload(upload_id, name, real, size, part)
        log.info("upload %s: %s (%s) to %s", upload_id, name, size_text(size), real)
        if size == 0:
            await self._complete(upload)
        return upload

    def upload(self, upload_id: str) -> Upload:
        try:
            return self.uploads[upload_id]
        except KeyError:
            raise TransferError(404, "unknown-upload", "there is no such upload (it finished, was cancelled, or "
                                f"waited more than {IDLE // 60} minutes)") from None

    async def write_chunk(self, upload_id: str, offset: int, data: bytes) -> Upload:
        upload = self.upload(upload_id)
        async with upload.lock:
            if upload.path is not None:
                raise TransferError(409, "complete", f"{upload.name} is already complete")
            if offset != upload.received:
                raise TransferError(409, "wrong-offset", f"the next chunk starts at {upload.received}, not {offset}")
            if offset + len(data) > upload.size:
                raise TransferError(400, "too-long", f"{upload.name} is longer than the {upload.size} bytes announced")
            try:
                await asyncio.to_thread(_write_at, upload.part, offset, data)
            except OSError as e:
                await self.cancel(upload_id)
                raise TransferError(507 if e.errno in (28, 122) else 500, "write-failed",
                                    f"{upload.name} could not be written ({e.strerror}); nothing was kept") from None
            upload.received += len(data)
            upload.touched = time.monotonic()
            if self.activity is not None:
                self.activity.touch()
            if upload.received == upload.size:
                await self._complete(upload)
        return upload

    async def _complete(self, upload: Upload) -> None:
        def finish() -> Path:
            with open(upload.part, "rb+") as f:
                os.fsync(f.fileno())
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(upload.part, 0o666 & ~mask)
            while True:  # link, not rename: a name taken meanwhile is never overwritten
                target = free_name(upload.directory, upload.name)
                try:
                    os.link(upload.part, target)
                    break
                except FileExistsError:
                    continue
            os.unlink(upload.part)
            return target
        upload.path = await asyncio.to_thread(finish)
        del self.uploads[upload.id]
        self.uploaded += 1
        log.info("upload %s complete: %s", upload.id, upload.path)

    async def cancel(self, upload_id: str) -> None:
        upload = self.uploads.pop(upload_id, None)
        if upload is not None:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(os.unlink, upload.part)
            log.info("upload %s of %s cancelled", upload_id, upload.name)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(60)
            now = time.monotonic()
            for upload in [u for u in self.uploads.values() if now - u.touched > IDLE]:
                log.info("upload %s of %s: no chunk for %d minutes", upload.id, upload.name, IDLE // 60)
                await self.cancel(upload.id)
            for offer_id in [o.id for o in self.offers.values() if o.expires < now]:
                del self.offers[offer_id]

    # Downloads.

    def offer(self, path) -> Offer:
        if not isinstance(path, str) or not path:
            raise TransferError(400, "bad-path", "'path' must be a file's path")
        given = Path(path)
        if not given.is_absolute():
            raise TransferError(400, "bad-path", f"{path} is not an absolute path")
        real = self.allowed(given)
        if not real.is_file():
            raise TransferError(404, "no-file", f"there is no file {given}")
        if not os.access(real, os.R_OK):
            raise TransferError(403, "not-readable", f"you may not read {given}")
        size = real.stat().st_size
        if size > self.limit:
            raise TransferError(413, "too-large", f"{given.name} is {size_text(size)}; the desktop sends files of at "
                                f"most {size_text(self.limit)}")
        offer = Offer(secrets.token_urlsafe(16), real, size, time.monotonic() + OFFER_LIFETIME)
        self.offers[offer.id] = offer
        self.pages.announce(offer.as_dict())
        log.info("offer %s: %s (%s)", offer.id[:6], real, size_text(size))
        return offer

    def pending_offers(self) -> list[dict]:
        """Offers no page has taken yet, for a page that opens now (sent before it connected)."""
        now = time.monotonic()
        return [o.as_dict() for o in self.offers.values() if o.expires > now and not o.taken]

    def stats(self) -> dict:
        return {"uploading": len(self.uploads), "uploaded": self.uploaded, "offered": len(self.offers),
                "downloaded": self.downloaded, "limit": self.limit}


def _write_at(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
    finally:
        os.close(fd)


class FilesHandler(ControlHandler):
    def initialize(self, transfers: FileTransfers):
        self.transfers = transfers

    def write_error(self, status_code: int, **kwargs):
        error = kwargs["exc_info"][1] if "exc_info" in kwargs else None
        if isinstance(error, TransferError):
            self.set_status(error.status)
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            return self.finish({"error": error.kind, "message": str(error)})
        return super().write_error(status_code, **kwargs)

    def log_exception(self, typ, value, tb):
        if isinstance(value, TransferError):
            log.info("%s %s: %s", self.request.method, self.request.path, value)
        else:
            super().log_exception(typ, value, tb)


class UploadsHandler(FilesHandler):
    async def post(self):
        body = self.body("name", "size", "directory")
        upload = await self.transfers.create_upload(body.get("name"), body.get("size"), body.get("directory"))
        self.set_status(201)
        self.write(upload.as_dict())


@web.stream_request_body
class UploadHandler(FilesHandler):
    def prepare(self):
        super().prepare()
        self.chunks: list[bytes] = []
        if self.request.method == "PUT":
            if int(self.request.headers.get("Content-Length") or 0) > CHUNK:
                raise TransferError(413, "chunk-too-large", f"a chunk is at most {CHUNK} bytes")
            self.request.connection.set_max_body_size(CHUNK)

    def data_received(self, chunk: bytes):
        self.chunks.append(chunk)

    def get(self, upload_id: str):
        self.write(self.transfers.upload(upload_id).as_dict())

    async def put(self, upload_id: str):
        try:
            offset = int(self.get_query_argument("offset"))
        except (ValueError, web.MissingArgumentError):
            raise BadRequest("a chunk needs its ?offset= in the file") from None
        upload = await self.transfers.write_chunk(upload_id, offset, b"".join(self.chunks))
        self.write(upload.as_dict())

    async def delete(self, upload_id: str):
        await self.transfers.cancel(upload_id)
        self.set_status(204)


class OffersHandler(FilesHandler):
    def post(self):
        offer = self.transfers.offer(self.body("path").get("path"))
        self.set_status(201)
        self.write({**offer.as_dict(), "pages": len(self.transfers.pages)})


class OfferHandler(FilesHandler):
    async def get(self, offer_id: str):
        offer = self.transfers.offers.get(offer_id)
        if offer is None or offer.expires < time.monotonic():
            raise TransferError(404, "unknown-offer", "this file is no longer offered: send it again from the desktop")
        quoted = urllib.parse.quote(offer.path.name, safe="")
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quoted}")
        self.set_header("X-Content-Type-Options", "nosniff")
        try:
            source = await asyncio.to_thread(open, offer.path, "rb")
        except OSError as e:
            raise TransferError(404, "no-file", f"{offer.path.name} cannot be read any more ({e.strerror})") from None
        try:
            size = os.fstat(source.fileno()).st_size
            self.set_header("Content-Length", str(size))
            sent = 0
            while sent < size:
                data = await asyncio.to_thread(source.read, min(READ_SIZE, size - sent))
                if not data:
                    break  # it shrank meanwhile: the browser sees a short download
                self.write(data)
                sent += len(data)
                if self.transfers.activity is not None:
                    self.transfers.activity.touch()
                try:
                    await self.flush()
                except iostream.StreamClosedError:
                    return  # the page cancelled
        finally:
            source.close()
        offer.taken = True
        self.transfers.downloaded += 1


def file_routes(transfers: FileTransfers) -> list:
    upload = r"/api/files/uploads/([0-9a-f]{16})"
    return [(pattern, handler, {"transfers": transfers}) for pattern, handler in (
        (r"/api/files/uploads", UploadsHandler),
        (upload, UploadHandler),
        (r"/api/files/offers", OffersHandler),
        (r"/api/files/offers/([A-Za-z0-9_-]{16,64})", OfferHandler),
    )]
