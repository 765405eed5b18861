"""The orphan reaper: removes this hub's servers, ports and floating IPs that no JupyterHub server owns.

A VM is an orphan when it carries the hub's tag but no server in the hub's database names it
(a stopped server's state names its shelved VM, which is therefore never an orphan):
the hub was killed in the middle of a start (the ids are saved only when a start succeeds), an
operator restored an old database, a delete failed while the cloud was down. The warm pool's
VMs (``pool.py``: metadata ``hepsdesk-pool-key`` and no user) are the hub's own, not orphans:
the hub keeps, adopts and removes them itself. Orphans cost GPUs
and quota, so the reaper deletes them, with their ports, once they are older than a grace
period longer than any start (``--grace``, 15 minutes by default; ``start_timeout`` is 10).

It runs as a JupyterHub service (like jupyterhub-idle-culler) with its own process, reading
the servers' saved state through the hub's REST API (scope ``admin:server_state``) and the
cloud through openstacksdk, so it never burdens the hub's event loop. ``--dry-run`` only logs
what it would delete. Every deletion is logged with the server's user and age.

    c.JupyterHub.services = [{"name": "hepsdesk-reaper", "command": ["hepsdesk-reaper", "--cloud", "heps"]}]
    c.JupyterHub.load_roles = [{"name": "hepsdesk-reaper", "services": ["hepsdesk-reaper"],
                                "scopes": ["list:users", "read:users:name", "read:servers", "admin:server_state"]}]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import requests

from .cloud import OpenStackClient, SDKError
from .pool import POOL_KEY

log = logging.getLogger("hepsdesk.reaper")


@dataclass(frozen=True)
class Owned:
    """What the hub's database says is in use."""

    server_ids: frozenset[str]
    port_ids: frozenset[str]
    busy: frozenset[tuple[str, str]]  # (user, server name) with a start or stop in progress
    floating_ip_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Orphan:
    kind: str  # "server", "port" or "floating IP"
    id: str
    name: str
    user: str
    age_s: float

    def __str__(self) -> str:
        owner = f" of {self.user}" if self.user else ""
        return f"{self.kind} {self.id} ({self.name}{owner}, {self.age_s / 60:.0f} min old)"


def owned_by_hub(api_url: str, token: str, timeout: float = 30) -> Owned:
    """Every server id and port id in the hub's saved server states, page by page."""
    session = requests.Session()
    session.headers.update({"Authorization": f"token {token}", "Accept": "application/jupyterhub-pagination+json"})
    servers, ports, ips, busy = set(), set(), set(), set()
    offset = 0
    for _ in range(100_000):  # bounded: at most one page per user
        # Every user, with stopped servers too: a stopped server's state names its shelved VM.
        response = session.get(f"{api_url.rstrip('/')}/users", params={"offset": offset, "limit": 200,
                                                                      "include_stopped_servers": "1"},
                               timeout=timeout)
        response.raise_for_status()
        page = response.json()
        for user in page["items"]:
            for name, server in (user.get("servers") or {}).items():
                if server.get("pending"):
                    busy.add((user["name"], name))
                state = server.get("state") or {}
                if "state" not in server:
                    raise PermissionError("the reaper's token cannot read servers' state (needs admin:server_state)")
                servers.update([state["server_id"]] if state.get("server_id") else [])
                ports.update([state["port_id"]] if state.get("port_id") else [])
                ips.update([state["floating_ip_id"]] if state.get("floating_ip_id") else [])
        following = (page.get("_pagination") or {}).get("next")
        if not following:
            break
        offset = following["offset"]
    return Owned(frozenset(servers), frozenset(ports), frozenset(busy), frozenset(ips))


def _age(created_at: str | None, now: float) -> float:
    if not created_at:
        return 0.0
    created = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return now - created.timestamp()


def find_orphans(conn, hub_tag: str, owned: Owned, grace_s: float, now: float | None = None) -> list[Orphan]:
    """This hub's servers and ports that nothing owns and that are older than ``grace_s``."""
    now = time.time() if now is None else now
    orphans, live = [], set()
    for server in conn.compute.servers(details=True, tags=hub_tag):
        live.add(server.id)
        meta = server.metadata or {}
        user, name = meta.get("hepsdesk-user", ""), meta.get("hepsdesk-server", "")
        if server.id in owned.server_ids or (user, name) in owned.busy:
            continue
        if POOL_KEY in meta and not user:  # the hub's warm pool keeps it (and adopts it after a restart)
            continue
        age = _age(server.created_at, now)
        if age >= grace_s:
            orphans.append(Orphan("server", server.id, server.name, user, age))
    reaped = {o.id for o in orphans}
    for port in conn.network.ports(tags=hub_tag):
        if port.id in owned.port_ids or (port.device_id in live and port.device_id not in reaped):
            continue
        age = _age(port.created_at, now)
        if age >= grace_s:
            orphans.append(Orphan("port", port.id, port.name, "", age))
    for ip in conn.network.ips(tags=hub_tag):
        if ip.id in owned.floating_ip_ids or (ip.port_id and ip.port_id in owned.port_ids):
            continue
        age = _age(ip.created_at, now)
        if age >= grace_s:
            orphans.append(Orphan("floating IP", ip.id, ip.floating_ip_address or "", "", age))
    return orphans


def reap(conn, orphans: list[Orphan], dry_run: bool, wait_s: float = 120) -> int:
    """Delete the orphans (servers first, then floating IPs and ports); return how many were deleted."""
    if dry_run:
        for orphan in orphans:
            log.warning("Orphan %s: would delete it (dry run)", orphan)
        return 0
    deleted = 0
    servers = [o for o in orphans if o.kind == "server"]
    for orphan in servers:
        log.warning("Orphan %s: deleting it", orphan)
        conn.compute.delete_server(orphan.id, ignore_missing=True)
    deadline = time.monotonic() + wait_s
    for orphan in servers:
        while conn.compute.find_server(orphan.id, ignore_missing=True) is not None and time.monotonic() < deadline:
            time.sleep(1)
        deleted += 1
    for orphan in (o for o in orphans if o.kind == "floating IP"):
        log.warning("Orphan %s: deleting it", orphan)
        conn.network.delete_ip(orphan.id, ignore_missing=True)
        deleted += 1
    for orphan in (o for o in orphans if o.kind == "port"):
        log.warning("Orphan %s: deleting it", orphan)
        conn.network.delete_port(orphan.id, ignore_missing=True)
        deleted += 1
    return deleted


def run_once(conn, api_url: str, token: str, hub_tag: str, grace_s: float, dry_run: bool) -> list[Orphan]:
    owned = owned_by_hub(api_url, token)
    orphans = find_orphans(conn, hub_tag, owned, grace_s)
    # A server owned by the hub now (a start that finished while we listed) is never deleted:
    # look once more just before deleting.
    if orphans:
        again = owned_by_hub(api_url, token)
        orphans = [o for o in orphans if o.id not in again.server_ids | again.port_ids | again.floating_ip_ids]
    reap(conn, orphans, dry_run)
    log.info("%d orphan(s) %s; %d server(s) owned by the hub", len(orphans),
             "found (dry run)" if dry_run else "removed", len(owned.server_ids))
    return orphans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hepsdesk-reaper", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cloud", default=os.environ.get("OS_CLOUD", "devcloud"), help="cloud in clouds.yaml")
    parser.add_argument("--clouds-yaml", default=os.environ.get("HEPSDESK_CLOUDS_YAML", ""),
                        help="clouds.yaml to read (default: openstacksdk's search path)")
    parser.add_argument("--hub-tag", default=os.environ.get("HEPSDESK_HUB_TAG", "hepsdesk-hub"),
                        help="the hub's tag (OpenStackSpawner.hub_tag)")
    parser.add_argument("--grace", type=float, default=900, help="seconds an unowned server may live (default 900)")
    parser.add_argument("--interval", type=float, default=300, help="seconds between passes (default 300)")
    parser.add_argument("--dry-run", action="store_true", help="only log what would be deleted")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname).1s %(asctime)s hepsdesk-reaper] %(message)s")
    api_url, token = os.environ.get("JUPYTERHUB_API_URL"), os.environ.get("JUPYTERHUB_API_TOKEN")
    if not api_url or not token:
        parser.error("run it as a JupyterHub service (JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN are not set)")
    if args.grace < 60:
        log.warning("--grace %.0f s is shorter than a start: a server being started may be deleted", args.grace)
    conn = OpenStackClient(args.cloud, args.clouds_yaml).connection()
    try:
        return _loop(conn, api_url, token, args)
    except KeyboardInterrupt:  # the hub stops its services with SIGINT
        return 0


def _loop(conn, api_url: str, token: str, args) -> int:
    parent = os.getppid()
    while True:
        try:
            run_once(conn, api_url, token, args.hub_tag, args.grace, args.dry_run)
        except (requests.RequestException, SDKError, PermissionError) as e:
            log.error("Pass failed (will try again): %s", e)
            if args.once:
                return 1
        if args.once:
            return 0
        wake = time.monotonic() + args.interval
        while time.monotonic() < wake:
            if os.getppid() != parent:  # the hub that started this service is gone (killed)
                log.warning("The hub that started the reaper is gone: exiting")
                return 0
            time.sleep(min(1.0, args.interval))


if __name__ == "__main__":
    sys.exit(main())
