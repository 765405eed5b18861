"""What signing in costs with the computing-account directory, against plain OIDC, in one run.

    .venv/bin/python benchmarks/login.py [--users 50] [--rounds 4] [--first 20]

Brings up what it needs: a Samba AD DC and a slapd of its own, and two hubs, each with its
development OIDC provider (a real OIDC provider process): one with oauthenticator's
GenericOAuthenticator and no directory (hub_plain_oidc.py), one with HEPSAuthenticator, AD and
the storage LDAP. Both carry the loop-lag probe (hub_with_lag_probe.py). No dev cloud: nobody
starts a server (the hubs run JupyterHub's simple spawner). A sign-in is what a browser does,
without one: the hub's login, the SSO's login form, the callback, the hub's home page. Prints
one JSON object:

- ``plain_oidc_p50_ms`` / ``plain_oidc_p95_ms``: sign-ins to the plain hub;
- ``existing_user_p50_ms`` / ``existing_user_p95_ms``: sign-ins of people who have their
  accounts, to the directory hub, interleaved with the plain ones (same moments, same load);
  ``existing_user_overhead_p95_ms``: the difference of the p95s (target: <= 150 ms);
- ``first_login_p95_ms``: first sign-ins, one at a time (AD account, groups, storage twin made);
- ``loop_lag_p99_ms``: the directory hub's event-loop lag while ``--users`` people sign in for
  the first time at once (target: < 50 ms), and ``plain_loop_lag_p99_ms`` for as many
  concurrent sign-ins to the plain hub;
- ``duplicate_uid_numbers``: uidNumbers held by more than one account in AD afterwards (must be 0).
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin

import ldap3
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import Bar, free_ports, percentile  # noqa: E402
from hepsdesk_devcloud.directory import DevActiveDirectory, DevStorageLDAP  # noqa: E402
from hepsdesk_devcloud.hub import DevHub  # noqa: E402


def sign_in(hub: DevHub, name: str, password: str) -> float:
    """One browserless sign-in; its duration in ms."""
    started = time.perf_counter()
    session = requests.Session()
    page = session.get(f"{hub.url}/hub/oauth_login?next=/hub/home", timeout=120)
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    if not action:
        raise RuntimeError(f"no SSO login form at {page.url} ({page.status_code})")
    home = session.post(urljoin(page.url, action.group(1)), data={"username": name, "password": password},
                        timeout=120)
    if home.status_code != 200 or not home.url.endswith("/hub/home"):
        raise RuntimeError(f"{name} did not land on the home page: {home.status_code} {home.url}\n{home.text[:300]}")
    return (time.perf_counter() - started) * 1000


def lags_between(lag_file: Path, started_at: float, ended_at: float) -> list[float]:
    return [float(lag) for at, lag in (line.split() for line in lag_file.read_text().splitlines())
            if started_at <= float(at) <= ended_at]


def concurrently(hub: DevHub, people: dict[str, str], lag_file: Path, label: str) -> list[float]:
    """Everyone in ``people`` signs in at once; the hub's loop lags meanwhile."""
    bar = Bar(label, len(people))
    started_at = time.time()
    with ThreadPoolExecutor(len(people)) as pool:
        futures = [pool.submit(sign_in, hub, name, password) for name, password in people.items()]
        for done, future in enumerate(futures, 1):
            future.result()
            bar.update(done)
    bar.done()
    time.sleep(1.5)  # the probe writes in batches, about once a second
    return lags_between(lag_file, started_at, time.time())


def duplicate_uid_numbers(directory: DevActiveDirectory) -> int:
    conn = directory.connect()
    try:
        entries = conn.extend.standard.paged_search(directory.base_dn, "(&(objectClass=user)(uidNumber=*))",
                                                     ldap3.SUBTREE, attributes=["uidNumber"], generator=False)
        counts = Counter(e["attributes"]["uidNumber"] for e in entries if e.get("type") == "searchResEntry")
    finally:
        conn.unbind()
    return sum(n - 1 for n in counts.values() if n > 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50, help="concurrent first sign-ins (default: %(default)s)")
    parser.add_argument("--first", type=int, default=20, help="first sign-ins one at a time (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="sign-ins of each of those people again, per hub (default: %(default)s)")
    parser.add_argument("--ports", default="18720,18721,19720,18730,18731,19730,19975",
                        help="plain hub, its API, its SSO; directory hub, its API, its SSO; slapd")
    parser.add_argument("--ad-address", default="127.0.0.6", help="the AD DC's loopback address")
    args = parser.parse_args()
    ports = free_ports(parser, args.ports)
    free_ports(parser, ",".join(map(str, ports[3:6])))
    work = Path(tempfile.mkdtemp(prefix="hepsdesk-login-bench-"))
    run = secrets.token_hex(2)
    clouds_yaml = work / "clouds.yaml"  # nobody starts a server: the hubs never read it
    clouds_yaml.write_text("clouds: {}\n")
    no_cloud = work / "no_cloud.py"  # so the hub's start does not look for a cloud either
    no_cloud.write_text('get_config().JupyterHub.spawner_class = "simple"\n')
    ad = DevActiveDirectory(work / "ad", address=args.ad_address)
    storage = DevStorageLDAP(work / "storage", port=ports[6])
    hubs: list[DevHub] = []
    try:
        print("Starting the AD DC, the storage LDAP and two hubs ...", file=sys.stderr)
        ad.start()
        storage.start()
        lag_files = {kind: work / f"{kind}-lag.txt" for kind in ("plain", "directory")}
        for kind, config, hub_ports, directories in (
                ("plain", "hub_plain_oidc.py", ports[0:3], {}),
                ("directory", "hub_with_lag_probe.py", ports[3:6], {"active_directory": ad, "storage_ldap": storage})):
            hub = DevHub(work / f"{kind}-hub", ROOT / "benchmarks" / config, clouds_yaml, port=hub_ports[0],
                         hub_port=hub_ports[1], oidc_port=hub_ports[2], **directories,
                         extra_env={"HEPSDESK_REPO_CONFIG": str(ROOT / "jupyterhub_config.py"),
                                    "HEPSDESK_LAG_FILE": str(lag_files[kind]), "HEPSDESK_REAPER": "off",
                                    "HEPSDESK_HUB_TAG": f"login-bench-{run}", "HEPSDESK_EXTRA_CONFIG": str(no_cloud)})
            hub.start()
            hubs.append(hub)
        plain, directory = hubs

        def people(prefix: str, count: int) -> dict[str, str]:
            made = {f"b{run}{prefix}{i:03d}": secrets.token_urlsafe(12) for i in range(count)}
            for hub in hubs:
                for name, password in made.items():
                    hub.oidc.set_user(name, password, groups=["heps-users"], proposals=[f"P-{run}-{prefix}"])
            return made

        # First sign-ins, one at a time (the plain hub has no first sign-in worth the name).
        first = people("f", args.first)
        bar = Bar("First sign-ins, one at a time", len(first))
        first_ms = []
        for done, (name, password) in enumerate(first.items(), 1):
            first_ms.append(sign_in(directory, name, password))
            sign_in(plain, name, password)
            bar.update(done)
        bar.done()

        # Existing users, interleaved, so both hubs see the same moments of the machine.
        plain_ms, existing_ms = [], []
        bar = Bar("Sign-ins of people who have accounts", args.rounds * len(first))
        for round_ in range(args.rounds):
            for i, (name, password) in enumerate(first.items()):
                order = (plain, directory) if (i + round_) % 2 else (directory, plain)
                for hub in order:
                    (plain_ms if hub is plain else existing_ms).append(sign_in(hub, name, password))
                bar.update(round_ * len(first) + i + 1)
        bar.done()

        crowd = people("c", args.users)
        directory_lags = concurrently(directory, crowd, lag_files["directory"],
                                      f"{args.users} first sign-ins at once (directory hub)")
        plain_lags = concurrently(plain, crowd, lag_files["plain"], f"{args.users} sign-ins at once (plain hub)")

        plain_p95, existing_p95 = percentile(plain_ms, 0.95), percentile(existing_ms, 0.95)
        print(json.dumps({
            "plain_oidc_p50_ms": percentile(plain_ms, 0.5), "plain_oidc_p95_ms": plain_p95,
            "existing_user_p50_ms": percentile(existing_ms, 0.5), "existing_user_p95_ms": existing_p95,
            "existing_user_overhead_p95_ms": round(existing_p95 - plain_p95, 1),
            "first_login_p50_ms": percentile(first_ms, 0.5), "first_login_p95_ms": percentile(first_ms, 0.95),
            "loop_lag_p99_ms": percentile(directory_lags, 0.99), "plain_loop_lag_p99_ms": percentile(plain_lags, 0.99),
            "concurrent_sign_ins": args.users, "sign_ins_per_hub": len(plain_ms),
            "duplicate_uid_numbers": duplicate_uid_numbers(ad),
        }, indent=2))
        return 0
    finally:
        for hub in hubs:
            hub.stop()
        storage.stop()
        ad.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
