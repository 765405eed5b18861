"""Identify processes by PID *and* start time, so a recycled PID is never mistaken for ours.

Used by the dev cloud's process table (hepsdesk's environment) and by the virt driver
(nova-compute, services' virtualenv); standard library only.
"""

from __future__ import annotations


def start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError, PermissionError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_same_process(pid: int | None, ticks: int | None) -> bool:
    """True if ``pid`` is alive and is the process that started at ``ticks``."""
    return bool(pid) and ticks is not None and start_ticks(pid) == ticks
