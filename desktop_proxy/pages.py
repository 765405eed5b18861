"""The desktop's open pages: what the desktop tells every one of them (a program copied
something, a file is sent to the browser), over each page's signalling websocket."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("desktop_proxy")


class Pages:
    def __init__(self):
        self._senders: set[Callable[[dict], None]] = set()

    def add(self, send: Callable[[dict], None]) -> None:
        self._senders.add(send)

    def discard(self, send: Callable[[dict], None]) -> None:
        self._senders.discard(send)

    def __len__(self) -> int:
        return len(self._senders)

    def announce(self, message: dict) -> None:
        for send in list(self._senders):
            try:
                send(message)
            except Exception:
                log.exception("a page could not be told about %s", message.get("type"))
