"""Progress of a long command: numbered steps, a bar and the elapsed time.

On a terminal the current step's line is redrawn twice a second
(``[#####.....] 5/9  Starting Nova  0:12``); elsewhere (CI logs, pytest) each step prints
one line when it starts and one when it ends, so logs stay readable.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"


class StepProgress:
    def __init__(self, title: str, total: int, stream: TextIO | None = None, width: int = 20):
        self.title = title
        self.total = total
        self.stream = stream or sys.stderr
        self.width = width
        self.index = 0
        self.started = time.monotonic()
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._label = ""
        self._step_started = self.started
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _bar(self) -> str:
        filled = int(self.width * (self.index - 1) / max(1, self.total))
        return "[" + "#" * filled + "." * (self.width - filled) + "]"

    def _line(self) -> str:
        return (f"{self._bar()} {self.index}/{self.total}  {self._label}  "
                f"{_clock(time.monotonic() - self._step_started)} (total {_clock(self.elapsed)})")

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text)
            self.stream.flush()

    def _ticker(self) -> None:
        while not self._stop.wait(0.5):
            self._write("\r\033[K" + self._line())

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        self.index += 1
        self._label = label
        self._step_started = time.monotonic()
        ticker = None
        if self.interactive:
            self._stop.clear()
            self._write(self._line())
            ticker = threading.Thread(target=self._ticker, daemon=True)
            ticker.start()
        else:
            self._write(f"[{self.index}/{self.total}] {label} ...\n")
        ok = False
        try:
            yield
            ok = True
        finally:
            if ticker is not None:
                self._stop.set()
                ticker.join()
            took = time.monotonic() - self._step_started
            mark = "done" if ok else "FAILED"
            prefix = "\r\033[K" if self.interactive else ""
            self._write(f"{prefix}[{self.index}/{self.total}] {label}: {mark} in {took:.1f} s\n")

    def note(self, text: str) -> None:
        prefix = "\r\033[K" if self.interactive else ""
        self._write(f"{prefix}      {text}\n")
