"""What the dashboard shows, made from what the hub's process holds (no request to the cloud
per VM): the watcher's list of this hub's servers, the hub's own servers (who owns which VM,
last activity), the quota book, the desktops' reports, and GPU capacity as Placement last
said (one cached reading per model for everyone)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from hepsdesk_spawner.boot import SHELVED_STATES
from hepsdesk_spawner.capacity import GpuCapacity
from hepsdesk_spawner.desktop_reports import DesktopReports
from hepsdesk_spawner.pool import POOL_KEY
from hepsdesk_spawner.quotas import Charge, QuotaBook, Usage
from hepsdesk_spawner.site import CloudSite
from hepsdesk_spawner.watcher import ServerView

STOP, SHELVE, DELETE = "stop", "shelve", "delete"
ACTIONS = (STOP, SHELVE, DELETE)


@dataclass(frozen=True)
class Owner:
    """The hub's server a VM belongs to, as the hub's database has it."""

    user: str
    server: str
    server_id: str  # the VM its saved state names
    running: bool  # the hub's server is up (not stopped)
    pending: str  # "spawn", "stop", ... or ""
    last_activity: datetime | None


def age_seconds(created: str, now: float) -> int | None:
    try:
        return max(0, int(now - datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()))
    except ValueError:
        return None


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.replace(tzinfo=moment.tzinfo or UTC).isoformat()


def vm_row(view: ServerView, owner: Owner | None, reports: DesktopReports, now: float) -> dict:
    """One VM: whose, what, where, how old, in use, and what an operator may do to it."""
    meta = view.metadata
    user, server = meta.get("hepsdesk-user", ""), meta.get("hepsdesk-server", "")
    pooled = POOL_KEY in meta and not user  # the warm pool's: waiting for a user, not an orphan
    orphan = not pooled and (owner is None or owner.server_id != view.id)
    charge = Charge.from_metadata(meta)
    report = None if orphan else reports.get(QuotaBook.key(user, server), now)
    if pooled or orphan or owner.pending:
        actions = [DELETE] if orphan else []  # (the pool keeps its own)
    elif owner.running:
        actions = [STOP, SHELVE, DELETE]
    else:
        actions = [DELETE]  # a stopped server's VM: shelved, kept for its next start
    return {
        "id": view.id, "user": user, "server": server, "profile": meta.get("hepsdesk-profile", ""),
        "image": meta.get("hepsdesk-image") or view.image, "flavor": view.flavor,
        "gpus": ", ".join(f"{count}x {model}" for model, count in charge.gpus) if charge else "",
        "group": charge.group if charge else "", "host": view.host, "state": view.status,
        "task": view.task_state or "", "shelved": view.status in SHELVED_STATES,
        "age_s": age_seconds(view.created, now),
        "last_activity": None if owner is None else iso(owner.last_activity),
        "desktop": None if report is None else {"connected": report.connected, "viewers": report.viewers,
                                                "guests": report.guests, "fps": report.fps},
        "orphan": orphan, "pooled": pooled, "pending": "" if owner is None else owner.pending, "actions": actions,
    }


def usage_dict(usage: Usage) -> dict:
    return {"vms": usage.vms, "vcpus": usage.vcpus, "gpus": dict(sorted(usage.gpus.items()))}


def dashboard_state(site: CloudSite, owner_of: Callable[[str, str], Owner | None], reports: DesktopReports,
                    gpus: list[GpuCapacity], now: float | None = None) -> dict:
    """Everything the page shows, as JSON."""
    now = time.time() if now is None else now
    views = sorted(site.watcher.servers.values(),
                   key=lambda v: (v.metadata.get("hepsdesk-user", ""), v.metadata.get("hepsdesk-server", ""), v.id))
    vms = [vm_row(view, owner_of(view.metadata.get("hepsdesk-user", ""), view.metadata.get("hepsdesk-server", "")),
                  reports, now) for view in views]
    usage = site.quotas.usage()
    groups = []
    for name in sorted(set(usage) | set(site.group_quotas)):
        quota = site.group_quotas.get(name)
        groups.append({"group": name, "used": usage_dict(usage.get(name, Usage())),
                       "limits": usage_dict(quota.limits) if quota else None})
    watcher = site.watcher
    return {
        "generated_at": datetime.fromtimestamp(now, UTC).isoformat(),
        "listed_ago_s": round(time.monotonic() - watcher.listed_at, 1) if watcher.listed_at else None,
        "vms": vms,
        "gpus": [{"model": c.model, "total": c.total, "free": c.free, "used": c.total - c.free} for c in gpus],
        "groups": groups,
        "orphans": sum(1 for vm in vms if vm["orphan"]),
        "pool": [{"profile": slug, "ready": site.pool.count(slug)[0], "booting": site.pool.count(slug)[1],
                  "target": site.pool.target(slug), "problem": site.pool.problems.get(slug, "")}
                 for slug in sorted(site.pool.settings)],
        "desktops_connected": sum(1 for vm in vms if vm["desktop"] and vm["desktop"]["connected"]),
    }
