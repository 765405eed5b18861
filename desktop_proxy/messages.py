"""What a browser may send the desktop, checked before anything acts on it.

The page is the user's, but whatever runs in a tab can send anything down the ``input`` data
channel and the signalling websocket. Every message type has a schema here: its fields, their
JSON types and ranges. A message is at most ``max_bytes`` long and ``MAX_DEPTH`` deep, strict
JSON (no NaN or Infinity), an object whose ``type`` is known, with exactly the fields of that type
(a boolean is ``true``/``false``, never ``"false"``). Anything else raises ``Rejected`` with a short
reason that never quotes the message; ``DropCounter`` counts what was dropped and logs it at most
once a second. Numbers are checked to be finite and in range, so nothing later can overflow.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import time
from dataclasses import dataclass

MAX_DEPTH = 2  # an object (of scalars, today; one level more for what comes)


class Rejected(ValueError):
    """A message that is not one the desktop takes; ``reason`` names why, not what it held."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Field:
    """One field of a message: ``kind`` is "number", "integer", "bool" or "string"."""

    kind: str
    low: float = -math.inf
    high: float = math.inf
    max_length: int = 0  # strings
    required: bool = True

    def check(self, name: str, value) -> None:
        if self.kind == "bool":
            ok, wanted = isinstance(value, bool), "true or false"
        elif self.kind == "string":
            ok, wanted = isinstance(value, str) and len(value) <= self.max_length, \
                f"a string of at most {self.max_length} characters"
        else:
            integer = self.kind == "integer"
            ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value) and self.low <= value <= self.high
            wanted = f"{'an integer' if integer else 'a number'} in [{self.low:g}, {self.high:g}]"
        if not ok:
            raise Rejected(f"field {name!r} must be {wanted}")


class MessageSchema:
    """The message types one channel takes (``types``: type -> its fields)."""

    def __init__(self, name: str, types: dict[str, dict[str, Field]], max_bytes: int, version: int | None = None):
        self.name, self.types, self.max_bytes, self.version = name, types, max_bytes, version

    def parse(self, raw: str | bytes) -> dict:
        """The message as a dict, or ``Rejected``."""
        if not isinstance(raw, (str, bytes)):
            raise Rejected("not text")
        if len(raw) > self.max_bytes:  # before anything reads it (a str's length <= its UTF-8 bytes)
            raise Rejected(f"longer than {self.max_bytes} bytes")
        if isinstance(raw, str) and len(raw.encode("utf-8", "surrogatepass")) > self.max_bytes:
            raise Rejected(f"longer than {self.max_bytes} bytes")
        try:
            message = json.loads(raw, parse_constant=_no_constant)
        except Rejected:
            raise
        except RecursionError:  # the parser stops at the interpreter's recursion limit
            raise Rejected(f"nested deeper than {MAX_DEPTH}") from None
        except ValueError:  # UnicodeDecodeError is one too
            raise Rejected("not JSON") from None
        if _depth(message) > MAX_DEPTH:
            raise Rejected(f"nested deeper than {MAX_DEPTH}")
        if not isinstance(message, dict):
            raise Rejected("not a JSON object")
        kind = message.get("type")
        fields = self.types.get(kind) if isinstance(kind, str) else None
        if fields is None:
            raise Rejected("unknown type")
        if self.version is not None and (type(message.get("v")) is not int or message["v"] != self.version):
            raise Rejected(f"not version {self.version}")
        allowed = {"type", *(["v"] if self.version is not None else []), *fields}
        if unknown := set(message) - allowed:
            raise Rejected(f"unknown field{'s' if len(unknown) > 1 else ''} for {kind!r}")
        for name, field in fields.items():
            if name in message:
                field.check(name, message[name])
            elif field.required:
                raise Rejected(f"{kind!r} needs {name!r}")
        return message


def _no_constant(name: str):
    raise Rejected(f"{name} is not a number the desktop takes")


def _depth(value) -> int:
    """How deep a parsed message nests (0 for a scalar); stops counting past ``MAX_DEPTH``."""
    def depth(value, level: int) -> int:
        if level > MAX_DEPTH or not isinstance(value, (dict, list)):
            return level
        children = value.values() if isinstance(value, dict) else value
        return max((depth(child, level + 1) for child in children), default=level + 1)
    return depth(value, 0)


class DropCounter:
    """Counts dropped messages by reason; logs a summary at most once per ``interval`` seconds,
    never their content."""

    def __init__(self, channel: str, log: logging.Logger, interval: float = 1.0):
        self.channel, self.log, self.interval = channel, log, interval
        self.total = 0
        self._pending: collections.Counter[str] = collections.Counter()
        self._logged = -math.inf

    def drop(self, reason: str) -> None:
        self.total += 1
        self._pending[reason] += 1
        now = time.monotonic()
        if now - self._logged >= self.interval:
            self._logged = now
            summary = ", ".join(f"{n} {why}" for why, n in self._pending.most_common(5))
            self.log.warning("%s: dropped %d message%s (%s); %d since the start", self.channel,
                             sum(self._pending.values()), "" if sum(self._pending.values()) == 1 else "s",
                             summary, self.total)
            self._pending.clear()


TEXT_CHUNK = 128  # characters of one text message (desktop.js sends longer text in several)

# The input data channel (desktop.js ``send``): version 1.
INPUT = MessageSchema("input", {
    "pointer": {"x": Field("number", 0, 1), "y": Field("number", 0, 1)},  # a fraction of the picture
    "button": {"button": Field("integer", 0, 4), "down": Field("bool")},  # MouseEvent.button
    # Wheel clicks (the page turns smooth scrolling into clicks); relative motion while the
    # pointer is locked (3D views), in desktop pixels.
    "wheel": {"dx": Field("number", -100, 100, required=False), "dy": Field("number", -100, 100, required=False)},
    "motion": {"dx": Field("integer", -4096, 4096), "dy": Field("integer", -4096, 4096)},
    "key": {"keysym": Field("integer", 0, 0x1FFFFFFF), "down": Field("bool")},  # an X keysym
    # Committed text: what an input method (pinyin, Japanese), an on-screen keyboard or a paste of
    # characters delivers as text, not as key events; typed on the desktop character by character.
    "text": {"text": Field("string", max_length=TEXT_CHUNK)},
    "release-all": {},
}, max_bytes=1024, version=1)

OFFER = {"sdp": Field("string", max_length=64 * 1024)}
PARTICIPANT = Field("string", max_length=16)  # a participant's id (sharing.Participant)

# The owner's signalling websocket: the browser's WebRTC offer, its window's size, a quality
# preset, its keyboard layout; and what the owner decides about the people the desktop is
# shared with (sharing.py).
SIGNALLING = MessageSchema("signalling", {
    "offer": OFFER,
    "resize": {"width": Field("number", 1, 16384), "height": Field("number", 1, 16384),
               "scale": Field("number", 0.1, 8)},
    "preset": {"name": Field("string", max_length=64)},
    "layout": {"name": Field("string", max_length=16)},  # the browser's keyboard layout (XKB name)
    "give-control": {"id": PARTICIPANT},
    "take-control": {},
    "admit": {"id": PARTICIPANT, "accept": Field("bool")},
    "remove": {"id": PARTICIPANT},
    "end-sharing": {},
}, max_bytes=128 * 1024)

# A guest's signalling websocket (``/share/ws``, opened by the hub's relay): the relay's first
# message names the guest; then the guest's page may offer and ask for control, nothing else.
SHARE_HELLO = MessageSchema("share", {
    "viewer": {"name": Field("string", max_length=256), "role": Field("string", max_length=16),
               "share": Field("string", max_length=64)},
}, max_bytes=1024)
SHARE_SIGNALLING = MessageSchema("share", {
    "offer": OFFER,
    "ask-control": {},
}, max_bytes=128 * 1024)
