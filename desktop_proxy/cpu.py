"""Where the desktop server's CPU goes, by stage: the threads it starts are named for their
stage (``name_thread``) and ``stage_seconds`` sums the CPU time of the process's threads by
name, so a benchmark can tell capture from encoding from sending.

- ``loop``: the main thread, asyncio's loop: signalling, and sending the coded pictures
  (aiortc packetizes, encrypts (SRTP) and sends them there);
- ``capture``: grabbing the screen and converting it to YUV;
- ``encode``: the encoder, with its own threads (x264 starts them from the encode thread,
  whose name they take, and ends them when it is opened again);
- ``other``: everything else (executors, sound, the clipboard).

Threads that ended are still in the process's total (``/proc/self/stat``) but no longer in
its list of threads, so ``encode`` is that total less the other stages: the encoder's threads
come and go, the others last as long as the desktop.
"""

from __future__ import annotations

import ctypes
import os

PR_SET_NAME = 15
STAGES = {"hd-capture": "capture", "hd-encode": "encode"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def name_thread(name: str) -> None:
    """Give the calling thread ``name`` in the kernel (15 bytes at most): ``top -H``, ``ps``
    and ``stage_seconds`` see it; threads it starts inherit it."""
    if _prctl is not None:
        _prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def _read(path: str) -> tuple[str, float]:
    """A task's name and its CPU seconds (user + system) from its ``stat`` file."""
    with open(path) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return stat[stat.index("(") + 1:stat.rindex(")")], (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def stage_seconds() -> dict[str, float]:
    """CPU seconds used so far by this process, by stage (zeros where /proc cannot be read)."""
    totals = dict.fromkeys(("loop", *STAGES.values(), "other"), 0.0)
    pid = os.getpid()
    try:
        _, process = _read("/proc/self/stat")
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return totals
    for tid in tasks:
        try:
            name, seconds = _read(f"/proc/self/task/{tid}/stat")
        except OSError:  # it ended meanwhile
            continue
        stage = "loop" if int(tid) == pid else STAGES.get(name, "other")
        if stage != "encode":
            totals[stage] += seconds
    totals["encode"] = max(0.0, process - sum(totals.values()))
    return {stage: round(seconds, 3) for stage, seconds in totals.items()}
