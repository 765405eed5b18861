"""What the spawner costs the cloud and the hub at facility scale, against a naive spawner.

    .venv/bin/python benchmarks/spawner_scale.py [--servers 1000] [--spawns 100]

Brings up what it needs (the dev cloud, reused when running) and prints one JSON object:

- ``servers``: idle servers running (flavor t1.empty: a real Nova server whose guest runs no
  processes, so a thousand fit on this machine), each owned by an ``OpenStackSpawner``;
- ``api_calls_per_poll_interval``: OpenStack API requests (counted in nova-api's own request
  log) per ``poll_interval`` while every spawner polls its server, with the shared watcher;
  ``naive_api_calls_per_poll_interval``: the same spawners polling the way a naive spawner
  does (one GET per server per poll, as libcloudspawner), in the same run, and the ratio;
- ``loop_lag_p99_ms``: the hub's event-loop lag (a probe in the hub's loop, see
  hub_with_lag_probe.py), p99 over the time ``--spawns`` users start servers at once through
  the hub's REST API (with a token the hub generated), ``loop_lag_max_ms``, and
  ``spawns_per_minute`` over that time. The VMs run a stub
  single-user server (an HTTP answer, no JupyterLab) so the machine measures the spawner,
  hub and cloud, not a hundred JupyterLabs starting on two cores;
- ``leaked_resources``: servers and ports of the run left after every server was stopped
  through the hub and the idle servers were deleted (must be 0);
- ``setup_servers_remade``: idle servers the cloud failed to boot, deleted and made again
  (the setup goes on; a spawn that meets the same fault is retried by the spawner itself).

The lag is measured from two seconds after the users are made (one request making 100 users
holds the loop ~0.5 s; that is setup, not spawning; a short run waits 0.05 s per user) until
every spawn is ready or failed.
``--keep-logs DIR`` keeps the hub's log and the lag files; with ``HEPSDESK_LOOP_DEBUG=stacks``
the log names every turn of the hub's loop over 100 ms with what ran in it, and every garbage
collection over 20 ms (``hub_with_lag_probe.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import Bar, dev_cloud, free_ports  # noqa: E402
from hepsdesk_devcloud import DevCloud  # noqa: E402
from hepsdesk_devcloud.bootstrap import HUB_NETWORK_QUOTAS, HUB_PROJECT, HUB_QUOTAS  # noqa: E402
from hepsdesk_devcloud.hub import DevHub  # noqa: E402
from hepsdesk_devcloud.service_plugins import hepsdesk_process_image as process_image  # noqa: E402
from hepsdesk_spawner import OpenStackSpawner  # noqa: E402

CONTROL_PROBE = """
import asyncio, sys, time
async def probe(path):
    with open(path, "a", buffering=1 << 16) as out:
        while True:
            for _ in range(100):
                started = time.perf_counter()
                await asyncio.sleep(0.01)
                out.write(f"{time.time():.3f} {(time.perf_counter() - started - 0.01) * 1000:.2f}\\n")
            out.flush()
asyncio.run(probe(sys.argv[1]))
"""


def nova_requests(cloud: DevCloud) -> int:
    """Requests nova-api has answered so far (its request log)."""
    with open(cloud.settings.logs_dir / "nova-api.log", "rb") as log:
        return sum(1 for line in log if b"nova.api.openstack.requestlog" in line)


def p99(values: list[float]) -> float:
    return round(statistics.quantiles(values, n=100)[98], 1) if len(values) >= 2 else (values or [0.0])[0]


class NaivePollingSpawner(OpenStackSpawner):
    """What the watcher replaces: each spawner asks Nova about its own server at every poll."""

    async def poll(self):
        server = await self.site.client.get_server(self.vm.server_id)
        return None if server is not None and server.status == "ACTIVE" else 0


def create_idle_servers(cloud: DevCloud, tag: str, count: int, attempts: int = 3) -> tuple[list[str], int]:
    """``count`` ACTIVE idle servers tagged ``tag``, and how many had to be made again (a
    server the cloud failed to boot is deleted and made again, up to ``attempts`` rounds, so a
    rare failure of the setup does not end the run; the number is reported)."""
    conn = cloud.connect()
    image = conn.image.find_image("hepsdesk-desktop", ignore_missing=False).id
    flavor = conn.compute.find_flavor("t1.empty", ignore_missing=False).id
    local = threading.local()

    def create(i: int) -> str:
        if not hasattr(local, "conn"):
            local.conn = cloud.connect()
        return local.conn.compute.create_server(name=f"{tag}-{i:04d}", image_id=image, flavor_id=flavor,
                                                networks="none", tags=[tag], metadata={"hepsdesk-hub": tag}).id

    remade, wanted = 0, list(range(count))
    for attempt in range(1, attempts + 1):
        bar = Bar("Creating idle servers" if attempt == 1 else f"Making {len(wanted)} again", len(wanted))
        with ThreadPoolExecutor(8) as pool:
            for done, _ in enumerate(pool.map(create, wanted), 1):
                if done % 10 == 0:
                    bar.update(done)
        bar.done()
        bar = Bar("Waiting until they are ACTIVE", count)
        deadline = time.monotonic() + 60 + count
        while time.monotonic() < deadline:
            states = [s.status for s in conn.compute.servers(tags=tag)]
            bar.update(states.count("ACTIVE"), f"({states.count('ERROR')} in ERROR)")
            if states.count("ACTIVE") + states.count("ERROR") >= count:
                break
            time.sleep(1 if count <= 50 else 3)
        bar.done()
        failed = [s for s in conn.compute.servers(tags=tag) if s.status != "ACTIVE"]
        if not failed:
            return [s.id for s in conn.compute.servers(tags=tag)], remade
        sys.stderr.write(f"{len(failed)} idle servers did not boot ({failed[0].fault or failed[0].status}); "
                         "making them again\n")
        for server in failed:
            conn.compute.delete_server(server, ignore_missing=True)
        for server in failed:
            conn.compute.wait_for_delete(server, wait=120)
        remade += len(failed)
        wanted = [int(server.name.rsplit("-", 1)[1]) for server in failed]
    raise RuntimeError(f"{len(wanted)} idle servers did not become ACTIVE in {attempts} attempts")


async def poll_rounds(cloud: DevCloud, spawner_class, tag: str, server_ids: list[str], rounds: int,
                      poll_interval: float | None = None) -> dict:
    """Every spawner polls once per poll_interval, for ``rounds`` intervals; the nova requests
    made, the time a round of polls takes and this loop's lag."""
    spawners = []
    for i, server_id in enumerate(server_ids):
        spawner = spawner_class(cloud="devcloud", clouds_yaml=str(cloud.settings.clouds_yaml), hub_tag=tag)
        if poll_interval:
            spawner.poll_interval = poll_interval
        spawner.user = SimpleNamespace(name=f"user{i:04d}", url=f"/user/user{i:04d}/")
        spawner.vm.server_id = server_id
        spawners.append(spawner)
    interval = spawners[0].poll_interval
    lags: list[float] = []
    stop = asyncio.Event()

    async def probe():
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - started - 0.01) * 1000)

    prober = asyncio.ensure_future(probe())
    # The first poll of the watcher waits for its first list: warm up outside the window.
    await asyncio.gather(*(s.poll() for s in spawners[:1]))
    before = nova_requests(cloud)
    round_times, alive = [], 0
    for _ in range(rounds):
        started = time.monotonic()
        results = await asyncio.gather(*(s.poll() for s in spawners))
        round_times.append(time.monotonic() - started)
        alive = sum(1 for r in results if r is None)
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
    made = nova_requests(cloud) - before
    stop.set()
    await prober
    await spawners[0].site.close()
    return {"calls_per_interval": round(made / rounds, 1), "round_s": round(max(round_times), 2),
            "lag_p99_ms": p99(lags), "running": alive, "interval_s": interval}


def stub_image(conn, name: str, bin_dir: Path):
    script = bin_dir / "jupyterhub-singleuser"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {ROOT / 'tests' / 'stub_singleuser.py'}\n")
    script.chmod(0o755)
    with tempfile.TemporaryDirectory() as tmp:
        blob = os.path.join(tmp, "image.tar")
        process_image.write_base_image(blob, process_image.make_manifest("stub-singleuser", path=[str(bin_dir)]))
        return conn.image.create_image(name=name, filename=blob, disk_format="raw", container_format="bare",
                                       visibility="private", wait=True)


STARTER = "scale-starter"  # the user whose token asks for the starts
STARTER_CONFIG = f"""
get_config().JupyterHub.load_roles.append(
    {{"name": "{STARTER}", "users": ["{STARTER}"], "scopes": ["admin:servers", "admin:users"]}})
"""

FAILED_RE = re.compile(r"(?:Not starting|Error starting|Unhandled error starting) (\S+)'s server"
                       r"|(\S+)'s server failed to start")


def failed_users(hub_log: Path, users: list[str]) -> set[str]:
    """Users whose start failed, as the hub logged it."""
    found = {a or b for a, b in FAILED_RE.findall(hub_log.read_text(errors="replace"))}
    return found & set(users)


def concurrent_spawns(hub: DevHub, users: list[str], lag_file: Path, proxy_token: str) -> dict:
    """Start every user's server at once through the REST API; readiness is read from the
    proxy's routing table (not from the hub, whose loop is being measured)."""
    api = requests.Session()
    api.headers["Authorization"] = f"token {hub.secrets()['admin_token']}"
    base = f"{hub.url}/hub/api"
    routes_url = f"http://127.0.0.1:{hub.hub_port - 80}/api/routes"
    assert api.post(f"{base}/users", json={"usernames": users}, timeout=60).status_code in (201, 409)
    # The starts are asked with a token the hub made (for STARTER, see STARTER_CONFIG), as a
    # browser's session is: the hub checks it with one hash round. The configuration's token it
    # hashes with 16384 SHA-512 rounds, on its loop, at every request.
    made = api.post(f"{base}/users/{STARTER}/tokens", json={"note": "spawner_scale", "expires_in": 3600}, timeout=60)
    made.raise_for_status()
    starter = requests.Session()
    starter.headers["Authorization"] = f"token {made.json()['token']}"
    time.sleep(min(2.0, 0.05 * len(users)))  # the lag of making them (~0.5 s for 100) stays out of the window

    def start(user: str) -> int:
        return starter.post(f"{base}/users/{user}/server", json={}, timeout=120).status_code

    # Side by side: the same probe in an idle process of its own, to tell the hub's lag from
    # what a saturated machine (the dev cloud booting a hundred VMs on 2 cores) does to anyone.
    control_file = lag_file.with_name("control-lag.txt")
    control = subprocess.Popen([sys.executable, "-c", CONTROL_PROBE, str(control_file)])
    started_at = time.time()
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(start, users))
    bar = Bar(f"{len(users)} concurrent spawns through the hub", len(users))
    ready: set[str] = set()
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and len(ready) < len(users):
        routes = requests.get(routes_url, headers={"Authorization": f"token {proxy_token}"}, timeout=30).json()
        routed = {path.rstrip("/") for path in routes}
        ready = {u for u in users if f"/user/{u}" in routed}
        bar.update(len(ready))
        # Anyone failed? Read from the hub's log, which costs its loop nothing (asking its API
        # does: a list of every user holds the loop ~50 ms, and each request's token is hashed).
        failed = failed_users(hub.log_path, users)
        if len(ready | failed) >= len(users):
            break
        time.sleep(1)
    bar.done()
    took = time.monotonic() - started
    ended_at = time.time()
    control.terminate()
    control.wait(10)
    lags, control_lags = ([float(lag) for at, lag in (line.split() for line in path.read_text().splitlines())
                           if started_at <= float(at) <= ended_at] for path in (lag_file, control_file))
    failed = len(users) - len(ready)  # failed, or not ready in time

    bar = Bar("Stopping them through the hub", len(users))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda u: api.delete(f"{base}/users/{u}/server", timeout=300), users))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        running = [m for m in api.get(f"{base}/users", timeout=60).json() if m.get("servers") or m.get("pending")]
        bar.update(len(users) - len(running))
        if not running:
            break
        time.sleep(2)
    bar.done()
    return {"ready": len(ready), "failed": failed, "took_s": round(took, 1), "lags": lags, "control_lags": control_lags,
            "http_codes": sorted(set(codes))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=1000, help="idle servers to poll (default 1000)")
    parser.add_argument("--spawns", type=int, default=100, help="concurrent spawns through the hub (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="poll intervals measured per spawner kind")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the hub's log and the lag files here (to find "
                        "what lagged: HEPSDESK_LOOP_DEBUG=stacks also logs slow turns and collections)")
    parser.add_argument("--poll-interval", type=float, default=None,
                        help="seconds between polls (default: the spawner's poll_interval, 10)")
    parser.add_argument("--state-dir", default=os.environ.get("HEPSDESK_DEVCLOUD_STATE", str(ROOT / ".devcloud")))
    parser.add_argument("--ports", default="18600,18681,19950", help="hub, hub API, SSO (default: %(default)s)")
    args = parser.parse_args()
    port, hub_port, oidc_port = free_ports(parser, args.ports)
    cloud, reused = dev_cloud(args.state_dir)
    run = f"scale-{os.getpid()}"
    idle_tag, hub_tag = f"hepsdesk-{run}-idle", f"hepsdesk-{run}-hub"
    admin = cloud.connect("devcloud-admin")
    project = admin.identity.find_project(HUB_PROJECT, domain_id="default")
    work = Path(tempfile.mkdtemp(prefix="hepsdesk-scale-"))
    image = None
    result: dict = {"servers": args.servers, "spawns": args.spawns}
    try:
        admin.set_compute_quotas(project.id, instances=args.servers + args.spawns + 50,
                                 cores=HUB_QUOTAS["cores"] + args.servers + 2 * args.spawns,
                                 ram=HUB_QUOTAS["ram"])
        admin.set_network_quotas(project.id, port=HUB_NETWORK_QUOTAS["port"] + args.spawns)
        idle, result["setup_servers_remade"] = create_idle_servers(cloud, idle_tag, args.servers)

        sys.stderr.write(f"Polling {len(idle)} servers for {args.rounds} poll intervals: shared watcher ...\n")
        ours = asyncio.run(poll_rounds(cloud, OpenStackSpawner, idle_tag, idle, args.rounds, args.poll_interval))
        sys.stderr.write(f"Polling {len(idle)} servers for {args.rounds} poll intervals: naive spawner ...\n")
        naive = asyncio.run(poll_rounds(cloud, NaivePollingSpawner, idle_tag, idle, args.rounds, args.poll_interval))
        result.update({
            "poll_interval_s": ours["interval_s"],
            "api_calls_per_poll_interval": ours["calls_per_interval"],
            "naive_api_calls_per_poll_interval": naive["calls_per_interval"],
            "naive_to_watcher_calls_ratio": round(naive["calls_per_interval"] / max(ours["calls_per_interval"], 1), 1),
            "poll_round_s": ours["round_s"], "naive_poll_round_s": naive["round_s"],
            "poll_loop_lag_p99_ms": ours["lag_p99_ms"], "naive_poll_loop_lag_p99_ms": naive["lag_p99_ms"],
            "polls_answered_running": ours["running"], "naive_polls_answered_running": naive["running"],
        })

        image = stub_image(cloud.connect(), f"hepsdesk-{run}-stub", work)
        lag_file = work / "hub-lag.txt"
        starter_config = work / "starter.py"
        starter_config.write_text(STARTER_CONFIG)
        proxy_token = secrets.token_hex(16)
        hub = DevHub(work / "hub", ROOT / "benchmarks" / "hub_with_lag_probe.py", cloud.settings.clouds_yaml,
                     port=port, hub_port=hub_port, oidc_port=oidc_port, extra_env={
                         "HEPSDESK_REPO_CONFIG": str(ROOT / "jupyterhub_config.py"), "HEPSDESK_LAG_FILE": str(lag_file),
                         "HEPSDESK_HUB_TAG": hub_tag, "HEPSDESK_IMAGE": image.name, "HEPSDESK_REAPER": "off",
                         "HEPSDESK_START_TIMEOUT": "900", "CONFIGPROXY_AUTH_TOKEN": proxy_token,
                         "HEPSDESK_EXTRA_CONFIG": str(starter_config)})
        hub.start()
        try:
            spawns = concurrent_spawns(hub, [f"u{i:03d}" for i in range(args.spawns)], lag_file, proxy_token)
        finally:
            hub.stop()
        result.update({
            "loop_lag_p99_ms": p99(spawns["lags"]), "loop_lag_max_ms": round(max(spawns["lags"] or [0]), 1),
            "idle_process_lag_p99_ms": p99(spawns["control_lags"]),
            "loop_lag_to_idle_process_ratio": round(p99(spawns["lags"]) / max(p99(spawns["control_lags"]), 0.1), 2),
            "spawns_ready": spawns["ready"], "spawns_failed": spawns["failed"],
            "spawns_took_s": spawns["took_s"],
            "spawns_per_minute": round(spawns["ready"] / spawns["took_s"] * 60, 1),
        })
        leaked = [s.id for s in admin.compute.servers(all_projects=True, tags=hub_tag)]
        leaked += [p.id for p in admin.network.ports(tags=hub_tag)]
        result["leaked_resources"] = len(leaked)
    finally:
        bar = Bar("Deleting the idle servers", args.servers)
        servers = list(admin.compute.servers(all_projects=True, tags=idle_tag))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda s: admin.compute.delete_server(s, ignore_missing=True), servers))
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            left = len(list(admin.compute.servers(all_projects=True, tags=idle_tag)))
            bar.update(args.servers - left)
            if not left:
                break
            time.sleep(1 if args.servers <= 50 else 3)
        bar.done()
        result["leaked_resources"] = result.get("leaked_resources", 0) + left
        for group in admin.network.security_groups(name=f"{hub_tag}-vms"):
            admin.network.delete_security_group(group, ignore_missing=True)
        if image is not None:
            admin.image.delete_image(image, ignore_missing=True)
        admin.set_compute_quotas(project.id, **HUB_QUOTAS)
        admin.set_network_quotas(project.id, **HUB_NETWORK_QUOTAS)
        if not reused:
            cloud.down()
        if args.keep_logs:
            Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
            for kept in [*work.glob("*lag*.txt"), *work.glob("hub/logs/*.log")]:
                shutil.copy(kept, args.keep_logs)
        shutil.rmtree(work, ignore_errors=True)  # the hub's database, logs and the lag files
    print(json.dumps(result))
    return 0 if result.get("leaked_resources") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
