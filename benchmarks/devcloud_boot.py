"""How fast the dev cloud comes up and boots servers, and what it costs in memory.

Brings up its own cloud in a temporary state directory on shifted ports (so it can run beside
a developer's cloud, though figures are cleaner without one), measures, and purges it:

    python benchmarks/devcloud_boot.py [--fresh-venv] [--port-offset 2000]
    python benchmarks/devcloud_boot.py --reuse .devcloud --sequential 2 --concurrent 2   # short form

``--reuse STATE_DIR`` measures the boots on a running cloud instead (``up_cold_s`` and
``up_warm_s`` are then null): the short form the tests run, beside the test suite's own cloud.

Prints one JSON object on stdout:
  install_s                 building the services' virtualenv (and Debian packages) when this
                            run had to (always with --fresh-venv), else null
  up_cold_s                 empty state dir, software installed, to every service healthy
  up_warm_s                 `down` then `up` on the same state (a host reboot)
  create_to_active_p50_s    create request to ACTIVE, over 20 sequential and 10 concurrent boots
  create_to_active_p95_s
  sequential_p50_s, sequential_p95_s, concurrent_p50_s, concurrent_p95_s   the two sets apart
  warm_to_cold_ratio        up_warm_s / up_cold_s
  control_plane_rss_mb      resident memory of every service process after the boots
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hepsdesk_devcloud import DevCloud, DevCloudError, DevCloudSettings  # noqa: E402

USER_DATA = base64.b64encode(b"#!/bin/sh\necho benchmark guest up\n").decode()


def log(message: str) -> None:
    print(f"[devcloud_boot] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return round(ordered[index], 2)


def boot_and_time(conn, image_id: str, flavor_id: str, network_id: str, name: str) -> tuple[float, str]:
    """Create one server and poll it (every 0.2 s) until it is ACTIVE."""
    started = time.monotonic()
    server = conn.compute.create_server(name=name, image_id=image_id, flavor_id=flavor_id,
                                        networks=[{"uuid": network_id}], user_data=USER_DATA)
    deadline = started + 300
    while time.monotonic() < deadline:
        server = conn.compute.get_server(server.id)
        if server.status == "ACTIVE":
            return time.monotonic() - started, server.id
        if server.status == "ERROR":
            raise RuntimeError(f"{name} went to ERROR: {server.fault}")
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ACTIVE after 300 s")


def boot_concurrently(cloud: DevCloud, image_id: str, flavor_id: str, network_id: str, count: int,
                      prefix: str) -> tuple[list[float], list[str]]:
    """Create ``count`` servers at once (one thread and connection each) and watch them the
    way a hub does: one list call every 0.5 s for all of them, not one poll per server."""
    started: dict[str, float] = {}

    def create(index: int) -> None:
        own = cloud.connect()
        t0 = time.monotonic()
        server = own.compute.create_server(name=f"{prefix}-par-{index}", image_id=image_id, flavor_id=flavor_id,
                                           networks=[{"uuid": network_id}], user_data=USER_DATA)
        started[server.id] = t0

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        list(pool.map(create, range(count)))
    conn = cloud.connect()
    active: dict[str, float] = {}
    deadline = time.monotonic() + 600
    while len(active) < count and time.monotonic() < deadline:
        for server in conn.compute.servers(name=f"^{prefix}-par-"):
            if server.id in started and server.id not in active:
                if server.status == "ACTIVE":
                    active[server.id] = time.monotonic() - started[server.id]
                elif server.status == "ERROR":
                    raise RuntimeError(f"{server.name} went to ERROR: {server.fault}")
        time.sleep(0.5)
    if len(active) < count:
        raise RuntimeError(f"only {len(active)} of {count} concurrent servers became ACTIVE")
    return list(active.values()), list(started)


def delete_and_wait(conn, server_ids: list[str]) -> None:
    for server_id in server_ids:
        conn.compute.delete_server(server_id, ignore_missing=True)
    deadline = time.monotonic() + 120
    while any(conn.compute.find_server(i) for i in server_ids) and time.monotonic() < deadline:
        time.sleep(0.5)


def group_rss_mb(cloud: DevCloud) -> float:
    """RSS of every process in the services' process groups (workers included)."""
    pgids = {record.pid for name in cloud.services if (record := cloud.processes.running(name))}
    total_kb = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) not in pgids:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except (OSError, ProcessLookupError):
            continue
    return round(total_kb / 1024, 1)


def measure_boots(cloud: DevCloud, sequential_count: int, concurrent_count: int, result: dict) -> None:
    """Boot times (sequential, then concurrent) and the control plane's memory into ``result``."""
    conn = cloud.connect()
    image = conn.image.find_image("hepsdesk-desktop", ignore_missing=False).id
    flavor = conn.compute.find_flavor("c1.small", ignore_missing=False).id
    network = conn.network.find_network("hepsdesk-net", ignore_missing=False).id
    prefix = f"bench-{os.getpid()}"
    sequential, created = [], []
    try:
        for index in range(sequential_count):
            took, server_id = boot_and_time(conn, image, flavor, network, f"{prefix}-seq-{index}")
            sequential.append(took)
            created.append(server_id)
            log(f"sequential boot {index + 1}/{sequential_count}: {took:.2f} s")
        delete_and_wait(conn, created)
        log(f"{concurrent_count} concurrent boots")
        concurrent_times, created = boot_concurrently(cloud, image, flavor, network, concurrent_count, prefix)
        result["control_plane_rss_mb"] = group_rss_mb(cloud)
    finally:
        delete_and_wait(conn, [*created, *(s.id for s in conn.compute.servers(name=f"^{prefix}-"))])
    both = sequential + concurrent_times
    result.update({
        "create_to_active_p50_s": percentile(both, 0.5),
        "create_to_active_p95_s": percentile(both, 0.95),
        "sequential_p50_s": percentile(sequential, 0.5),
        "sequential_p95_s": percentile(sequential, 0.95),
        "concurrent_p50_s": percentile(concurrent_times, 0.5),
        "concurrent_p95_s": percentile(concurrent_times, 0.95),
    })


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh-venv", action="store_true", help="build the services' virtualenv anew and time it")
    parser.add_argument("--port-offset", type=int, default=2000)
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=10)
    parser.add_argument("--reuse", metavar="STATE_DIR", help="measure the boots on this running cloud instead")
    args = parser.parse_args()

    if args.reuse:
        cloud = DevCloud(DevCloudSettings.load(args.reuse), user_clouds_yaml=None)
        if not cloud.is_running():
            parser.error(f"no dev cloud runs in {args.reuse}")
        result = {"install_s": None, "up_cold_s": None, "up_warm_s": None, "warm_to_cold_ratio": None}
        measure_boots(cloud, args.sequential, args.concurrent, result)
        print(json.dumps(result))
        return 0

    with tempfile.TemporaryDirectory(prefix="devcloud-bench-") as tmp:
        venv_dir = Path(tmp) / "venv" if args.fresh_venv else None
        settings = DevCloudSettings.load(Path(tmp) / "state", port_offset=args.port_offset, venv_dir=venv_dir)
        cloud = DevCloud(settings, user_clouds_yaml=None)
        result: dict = {}
        try:
            log("cold up (empty state dir)")
            report = cloud.up()
            result["install_s"] = round(report.install_s, 1) if report.installed else None
            result["up_cold_s"] = round(report.total_s - report.install_s, 1)

            log("warm up (down, then up on the same state)")
            cloud.down()
            started = time.monotonic()
            cloud.up()
            result["up_warm_s"] = round(time.monotonic() - started, 1)
            result["warm_to_cold_ratio"] = round(result["up_warm_s"] / result["up_cold_s"], 2)
            measure_boots(cloud, args.sequential, args.concurrent, result)
        except DevCloudError as e:
            log(f"failed: {e}")
            return 1
        finally:
            log("purging the benchmark's cloud")
            cloud.down(purge=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
