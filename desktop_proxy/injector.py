"""Mouse and keyboard input from the browser, injected into the X display with XTEST.

Keys arrive as X keysyms, so what the user typed is what the desktop receives, whatever
the keyboard layout of the browser's machine (text an input method commits arrives as text and
is typed character by character, each as its keysym): the injector finds the keycode (and the Shift
level) that produces the keysym on the desktop's keymap, and borrows an unused keycode for
keysyms the keymap lacks (never one an application may not have read yet: ``REBIND_AFTER``).
All X calls run on one thread, in arrival order; the queue to it
is bounded (``MAX_QUEUED``): a page that floods it loses its oldest messages, never a key or
button release (that would leave it held), and the desktop stays responsive.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

from Xlib import XK, X
from Xlib import display as xdisplay
from Xlib.ext import xtest

from .xdisplay import without_signals

log = logging.getLogger("desktop_proxy")
SHIFT = XK.XK_Shift_L
BUTTONS = {0: 1, 1: 2, 2: 3, 3: 8, 4: 9}  # browser MouseEvent.button -> X button (3, 4: back, forward)
MAX_WHEEL_CLICKS = 10  # of one wheel message
MAX_QUEUED = 256  # input messages waiting for the X thread (it handles thousands a second)
SPARE_KEYCODES = 32  # unused keycodes borrowed for keysyms the keymap lacks
# A program reads a key event's keycode against the keymap it has when it gets to the event:
# a borrowed keycode bound to another character before then types that one (under load, "grüße"
# came out as "gr界ße"). So a keycode is bound again only this long after it was last pressed.
REBIND_AFTER = 0.5


# Control characters committed text may hold, as the keys that type them.
TEXT_KEYS = {"\n": XK.XK_Return, "\r": XK.XK_Return, "\t": XK.XK_Tab}


def char_keysym(char: str) -> int | None:
    """The X keysym of one character (Latin-1 keysyms are the code point; others are Unicode
    keysyms, 0x1000000 + the code point); None for other control characters."""
    if char in TEXT_KEYS:
        return TEXT_KEYS[char]
    code = ord(char)
    if code < 0x20 or 0x7F <= code < 0xA0:
        return None
    return code if code < 0x100 else 0x01000000 + code


# The keyboard layouts the desktop takes on from the browser (XKB names): keys are sent as
# keysyms whatever the layout, but programs that read key codes (shortcuts, games, terminals'
# Alt combinations) then see the keys where the person's keyboard has them.
LAYOUTS = frozenset({"us", "gb", "de", "ch", "fr", "be", "es", "it", "pt", "se", "no", "dk", "fi", "pl", "cz",
                     "hu", "ru", "ua", "jp"})


class InputInjector:
    def __init__(self, display: str, width: int, height: int):
        self.width = width
        self.height = height
        self.dropped = 0  # messages dropped because the queue was full
        self._display = xdisplay.Display(display)
        self._held: dict[int, tuple[int, bool]] = {}  # keysym -> (keycode, shift added)
        self._shift_down = False
        self._spare: list[int] = self._find_spare_keycodes()
        self._borrowed_at: dict[int, float] = {}  # when each borrowed keycode was last bound
        self._queue: collections.deque[dict] = collections.deque()
        self._queued = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=without_signals(self._run), name="x-input", daemon=True)
        self._thread.start()

    def submit(self, message: dict) -> None:
        """Queue one checked input message (``messages.INPUT``)."""
        with self._queued:
            if self._closing:
                return
            if len(self._queue) >= MAX_QUEUED:
                self._drop_oldest()
            self._queue.append(message)
            self._queued.notify()

    def keymap_changed(self) -> None:
        """The display's keyboard layout changed: look the keysyms up again."""
        self.submit({"type": "keymap"})

    def close(self) -> None:
        """Release whatever is held, stop the X thread and close the display."""
        with self._queued:
            self._queue.append({"type": "release-all"})
            self._closing = True
            self._queued.notify()
        self._thread.join()
        self._display.close()

    def _drop_oldest(self) -> None:
        for index, queued in enumerate(self._queue):
            if queued.get("down") is not False:  # keep releases
                del self._queue[index]
                break
        else:
            self._queue.popleft()
        self.dropped += 1

    def _run(self) -> None:
        while True:
            with self._queued:
                while not self._queue and not self._closing:
                    self._queued.wait()
                if not self._queue:
                    return
                message = self._queue.popleft()
            self._handle(message)

    def _handle(self, message: dict) -> None:
        try:
            kind = message.get("type")
            if kind == "pointer":
                self._pointer(message["x"], message["y"])
            elif kind == "button":
                self._button(message["button"], message["down"])
            elif kind == "motion":
                xtest.fake_input(self._display, X.MotionNotify, detail=1, x=message["dx"], y=message["dy"])
            elif kind == "wheel":
                self._wheel(message.get("dx", 0), message.get("dy", 0))
            elif kind == "key":
                self._key(message["keysym"], message["down"])
            elif kind == "text":
                self._text(message["text"])
            elif kind == "release-all":
                self._release_all()
            elif kind == "keymap":  # the layout changed (setxkbmap): keycodes mean other keysyms now
                self._release_all()
                info = self._display.display.info
                self._display._update_keymap(info.min_keycode, info.max_keycode - info.min_keycode + 1)
                self._spare = self._find_spare_keycodes()
            self._display.sync()
        except Exception:
            log.exception("input injection failed (%s message)", message.get("type"))

    def _pointer(self, x: float, y: float) -> None:
        px = min(self.width - 1, max(0, round(x * self.width)))
        py = min(self.height - 1, max(0, round(y * self.height)))
        xtest.fake_input(self._display, X.MotionNotify, x=px, y=py)

    def _button(self, button: int, down: bool) -> None:
        xtest.fake_input(self._display, X.ButtonPress if down else X.ButtonRelease, BUTTONS.get(button, 1))

    def _wheel(self, dx: float, dy: float) -> None:
        for amount, negative, positive in ((dy, 4, 5), (dx, 6, 7)):
            if amount:
                button = negative if amount < 0 else positive
                for _ in range(max(1, min(MAX_WHEEL_CLICKS, round(abs(amount))))):
                    xtest.fake_input(self._display, X.ButtonPress, button)
                    xtest.fake_input(self._display, X.ButtonRelease, button)

    def _key(self, keysym: int, down: bool) -> None:
        if keysym in (XK.XK_Shift_L, XK.XK_Shift_R):
            self._shift_down = down
        if down:
            keycode, level = self._keycode(keysym)
            if keycode is None:
                log.warning("no keycode for keysym 0x%x", keysym)
                return
            add_shift = level == 1 and not self._shift_down
            if add_shift:
                xtest.fake_input(self._display, X.KeyPress, self._display.keysym_to_keycode(SHIFT))
            xtest.fake_input(self._display, X.KeyPress, keycode)
            self._held[keysym] = (keycode, add_shift)
            if keycode in self._borrowed_at:  # pressed now: not bound to another keysym for a while
                self._borrowed_at[keycode] = time.monotonic()
        else:
            keycode, added_shift = self._held.pop(keysym, (None, False))
            if keycode is None:
                keycode, _ = self._keycode(keysym)
            if keycode:
                xtest.fake_input(self._display, X.KeyRelease, keycode)
                if keycode in self._borrowed_at:
                    self._borrowed_at[keycode] = time.monotonic()
            if added_shift:
                xtest.fake_input(self._display, X.KeyRelease, self._display.keysym_to_keycode(SHIFT))

    def _text(self, text: str) -> None:
        """Type committed text: each character pressed and released as its keysym."""
        for char in text:
            keysym = char_keysym(char)
            if keysym is None:
                continue
            self._key(keysym, True)
            self._key(keysym, False)
            self._display.sync()  # in order, before a borrowed keycode is bound to the next one

    def _keycode(self, keysym: int) -> tuple[int | None, int]:
        for keycode, index in self._display.keysym_to_keycodes(keysym):
            if index in (0, 1):
                return keycode, index
        if not self._spare:
            return None, 0
        # Borrow the keycode used longest ago (with no keysyms of the keymap's) and bind this
        # keysym to it (both levels).
        keycode = self._spare.pop(0)
        wait = self._borrowed_at.get(keycode, -REBIND_AFTER) + REBIND_AFTER - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # this thread only: many new characters in a row type slower
        self._display.change_keyboard_mapping(keycode, [(keysym, keysym)])
        self._display.sync()
        self._spare.append(keycode)
        self._borrowed_at[keycode] = time.monotonic()
        return keycode, 0

    def _find_spare_keycodes(self) -> list[int]:
        first = self._display.display.info.min_keycode
        count = self._display.display.info.max_keycode - first + 1
        mapping = self._display.get_keyboard_mapping(first, count)
        return [first + i for i, syms in enumerate(mapping) if not any(syms)][-SPARE_KEYCODES:]

    def _release_all(self) -> None:
        for keysym in list(self._held):
            self._key(keysym, False)
        for button in (1, 2, 3):
            xtest.fake_input(self._display, X.ButtonRelease, button)
        self._display.sync()
