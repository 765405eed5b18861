"""Idle servers: a profile's ``idle_timeout`` stops a server nobody used for that long.

Idle time counts from the last activity the hub saw (JupyterLab's activity reports, traffic
through the hub's proxy) or from the moment the server became ready in this hub process,
whichever is later: a server that just started is not idle because its last activity is old.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def idle_seconds(last_activity: datetime | None, ready_at: float, now: float | None = None) -> float:
    """Seconds without activity (``ready_at`` and ``now``: ``time.time()``; JupyterHub keeps
    ``last_activity`` as naive UTC)."""
    since = last_activity.replace(tzinfo=last_activity.tzinfo or UTC).timestamp() if last_activity else 0.0
    return (time.time() if now is None else now) - max(since, ready_at)


ACTIVITY_INTERVAL = "HEPSDESK_DESKTOP_ACTIVITY_INTERVAL"  # read by desktop_proxy/server.py


def activity_interval(idle_timeout: int) -> int:
    """How often (seconds) the desktop reports a person's input to the hub, for a profile that
    stops servers idle for ``idle_timeout`` seconds: a sixth of it, between 5 s and a minute."""
    return max(5, min(60, idle_timeout // 6))
