"""How long a scientist waits, measured in a real browser (Chromium driven by Playwright).

    .venv/bin/python benchmarks/spawn_e2e.py [--rounds 3] [--profile desktop,neutron]

Brings up what it needs (the dev cloud, reused when running; the development directories, SSO
and hub on their own ports and addresses, as `hepsdesk demo` starts them: the user's first
sign-in makes their computing account, the storage agent their home) and prints one JSON
object:

- ``click_to_lab_s``: from the click on "Start My Server" to JupyterLab's launcher showing
  the Desktop tile (VM boot, JupyterLab start, hub and proxy hops), median of the rounds;
- ``click_to_first_frame_s``: from the click on the Desktop tile to the first video frame
  shown in the desktop tab (desktop server start through jupyter-server-proxy, X display,
  WebRTC negotiation, first decoded frame), median;
- side by side, in the same run: ``vm_create_to_active_s``, a bare server of the same image
  and flavor going ACTIVE (what the cloud costs), and ``direct_first_frame_s``, the same
  desktop server started on this machine without hub, VM or proxy and opened directly
  (what the desktop itself costs); and the ratios of each measurement to its baseline.

The warm pool (``OpenStackSpawner.warm_pool``), side by side in the same run: the hub offers
the analysis desktop twice, as ``desktop`` and as ``desktop-pooled`` (the same image and
flavor, one VM kept booted), and each round opens each from a portal-style link
(``/hub/spawn?profile=...&next=/hub/user-redirect/desktop/``: the server is not running, and
JupyterLab's own page is not on the way) until the first decoded desktop frame:
``cold_click_to_first_frame_s`` and ``warm_click_to_first_frame_s`` (medians), their ratio, and
what a pooled VM costs while it waits (``pool_idle_cores_per_vm``, ``pool_idle_pss_mb_per_vm``:
its guest's processes over ``--idle-seconds``). ``cold_stages_s`` and ``warm_stages_s`` say
where those rounds' time went (``STAGES``, medians). ``--no-pool``: the repository's profiles
instead, without these rounds; ``--warm-only``: the warm rounds alone, for work on the warm
start.

With several ``--profile``s (the spawn page's environments: e.g. ``neutron``, the largest
image, beside ``desktop``, the analysis desktop), each round starts each of them in turn; the
top-level figures are the first profile's, ``profiles`` has each one's and
``lab_to_first_profile_ratio`` compares each to the first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import requests
from playwright.sync_api import Page, expect, sync_playwright
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import dev_cloud, free_ports  # noqa: E402
from hepsdesk_devcloud import DevCloud  # noqa: E402
from hepsdesk_devcloud.demo import Demo, DemoOptions  # noqa: E402
from hepsdesk_devcloud.progress import StepProgress  # noqa: E402
from hepsdesk_spawner.guest_start import POOL_WAITING_MARKER  # noqa: E402
from hepsdesk_spawner.pool import POOL_KEY  # noqa: E402
from tests.e2e.hubflow import desktop_tile, launch, new_context, sign_in, submit_spawn_form  # noqa: E402

USER = "alice"


def first_frame_at(desktop: Page, timeout_s: float = 120) -> float:
    """When the desktop page showed its first video frame (seconds since the epoch)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            at = desktop.evaluate("window.hepsdesk ? window.hepsdesk.firstFrameAt : null")
        except Exception:  # the page is (re)loading
            at = None
        if at:
            return at / 1000
        desktop.wait_for_timeout(20)
    raise RuntimeError(f"no video frame within {timeout_s:.0f} s")


def hub_round(page: Page, url: str, api: requests.Session, profile: str) -> tuple[float, float]:
    page.goto(f"{url}/hub/home")
    start = page.get_by_role("button", name=re.compile("Start My Server"))
    clicked = time.time()
    start.click()
    submit_spawn_form(page, profile)  # the environment cards
    page.wait_for_url(re.compile(rf".*/user/{USER}/lab.*"), timeout=300_000)
    expect(desktop_tile(page)).to_be_visible(timeout=120_000)
    lab = time.time() - clicked

    with page.expect_popup() as popup:
        clicked = page.evaluate("Date.now()") / 1000
        desktop_tile(page).click()
    desktop = popup.value
    frame = first_frame_at(desktop) - clicked
    desktop.close()
    stop_server(url, api)
    return lab, frame


def portal_round(page: Page, url: str, api: requests.Session, profile: str) -> tuple[float, dict[str, float]]:
    """A portal's link to the desktop, the server not running: from its click to the first
    frame, and where that time went (``STAGES``)."""
    page.goto(f"{url}/hub/home")
    page.evaluate("""(href) => {
        const link = Object.assign(document.createElement("a"), {id: "portal-link", href, textContent: "My desktop"});
        document.body.prepend(link);
    }""", f"{url}/hub/spawn?profile={profile}&next=/hub/user-redirect/desktop/")
    hops: list[tuple[float, str, str]] = []  # (when, what, path) of the page's documents: requests, answers

    def request(r):
        if r.is_navigation_request() and r.frame == page.main_frame:
            hops.append((time.time(), "request", urlsplit(r.url).path))

    def response(r):
        if r.request.is_navigation_request() and r.frame == page.main_frame:
            hops.append((time.time(), str(r.status), urlsplit(r.url).path))

    page.on("request", request)
    page.on("response", response)
    try:
        clicked = page.evaluate("Date.now()") / 1000
        page.click("#portal-link")
        frame = first_frame_at(page, timeout_s=300) - clicked
        timeline = {k: v / 1000 for k, v in page.evaluate("window.hepsdesk.timeline").items()}
    finally:
        page.remove_listener("request", request)
        page.remove_listener("response", response)
    page.goto("about:blank")  # the tab closed, as the other rounds close theirs
    stop_server(url, api)
    return frame, stages(clicked, hops, timeline)


# Where a portal round's time goes, each stage from the end of the one before it:
STAGES = (
    ("spawn", "the click to the spawn's end (the pending page leaves for user-redirect)"),
    ("redirects", "user-redirect and the server's OAuth to the desktop page's request"),
    ("desktop_server", "that request to its answer (jupyter-server-proxy starts the desktop server)"),
    ("page", "the answer to the signalling websocket's opening"),
    ("ice_servers", "to the desktop's first message (its ICE servers, from the hub)"),
    ("offer", "to the browser's offer (ICE gathering)"),
    ("answer", "to the desktop's answer"),
    ("connect", "to the connection (ICE checks, DTLS)"),
    ("frame", "to the first decoded frame"),
)


def stages(clicked: float, hops: list[tuple[float, str, str]], timeline: dict[str, float]) -> dict[str, float]:
    redirect = next(t for t, what, path in hops if what == "request" and path.startswith("/hub/user-redirect/"))
    desktop = [(t, what) for t, what, path in hops if path == f"/user/{USER}/desktop/"]
    asked = [t for t, what in desktop if what == "request"][-1]  # after the server's OAuth
    answered = next(t for t, what in desktop if what == "200")
    points = [clicked, redirect, asked, answered, timeline["websocket"], timeline["ice"], timeline["gathered"],
              timeline["answer"], timeline["connected"], timeline["frame"]]
    return {name: round(b - a, 3) for (name, _), a, b in zip(STAGES, points[:-1], points[1:], strict=True)}


def stop_server(url: str, api: requests.Session) -> None:
    api.delete(f"{url}/hub/api/users/{USER}/server", timeout=30)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        model = api.get(f"{url}/hub/api/users/{USER}", timeout=30).json()
        if not model.get("servers") and not model.get("pending"):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{USER}'s server did not stop")


POOLED_PROFILES = [
    {"slug": "desktop", "display_name": "Analysis desktop", "default": True, "image": "hepsdesk-desktop",
     "flavor": "c1.small"},
    {"slug": "desktop-pooled", "display_name": "Analysis desktop (warm pool)", "image": "hepsdesk-desktop",
     "flavor": "c1.small"},
]


def wait_pool_ready(cloud: DevCloud, tag: str, timeout_s: float = 300) -> str:
    """The id of the pooled VM once its guest waits for a user (its console says so)."""
    conn = cloud.connect("devcloud-admin")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for server in conn.compute.servers(all_projects=True):
            meta = server.metadata or {}
            if meta.get("hepsdesk-hub") == tag and POOL_KEY in meta and server.status == "ACTIVE":
                console = conn.compute.get_server_console_output(server, length=20).get("output", "")
                if POOL_WAITING_MARKER in console:
                    time.sleep(1)  # its first request reaches the hub
                    return server.id
        time.sleep(0.5)
    raise RuntimeError(f"no pooled VM was ready within {timeout_s:.0f} s")


def guest_cost(cloud: DevCloud, server_id: str, seconds: float) -> tuple[float, float]:
    """CPU cores and PSS (MB) of a VM's processes (its monitor and everything under it), idle."""
    record = json.loads((cloud.guest_dir(server_id) / "vm.json").read_text())

    def tree() -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [record["monitor_pid"]]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children.get(pid, [])
        return found

    def cpu(pids: list[int]) -> float:
        ticks = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                continue
        return ticks / os.sysconf("SC_CLK_TCK")

    pids = tree()
    before, started = cpu(pids), time.monotonic()
    time.sleep(seconds)
    cores = (cpu(pids) - before) / (time.monotonic() - started)
    pss = 0
    for pid in pids:
        try:
            pss += next(int(line.split()[1]) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                        if line.startswith("Pss:"))
        except (OSError, StopIteration, ValueError):
            continue
    return cores, pss / 1024


def direct_round(browser, port: int) -> float:
    """The desktop server on this machine, opened directly: from its start to the first frame."""
    home = tempfile.mkdtemp(prefix="hepsdesk-bench-")
    env = {"PATH": os.environ["PATH"], "HOME": home, "LANG": "C.UTF-8",
           "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1"}
    started = time.time()
    process = subprocess.Popen([sys.executable, "-m", "desktop_proxy", "--port", str(port)], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    context = new_context(browser)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/static/desktop.css", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the desktop server did not start") from None
                time.sleep(0.02)
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        return first_frame_at(page) - started
    finally:
        context.close()
        process.terminate()
        process.wait(timeout=15)
        shutil.rmtree(home, ignore_errors=True)


def bare_vm_round(cloud: DevCloud, tag: str) -> float:
    conn = cloud.connect()
    image = conn.image.find_image("hepsdesk-desktop", ignore_missing=False)
    flavor = conn.compute.find_flavor("c1.small", ignore_missing=False)
    network = conn.network.find_network("hepsdesk-net", ignore_missing=False)
    started = time.monotonic()
    server = conn.compute.create_server(name=f"{tag}-bare", image_id=image.id, flavor_id=flavor.id,
                                        networks=[{"uuid": network.id}], metadata={"hepsdesk-hub": tag})
    try:
        conn.compute.wait_for_server(server, status="ACTIVE", interval=0.2, wait=180)
        return time.monotonic() - started
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, interval=0.5, wait=120)


def hub_spawn_stages(url: str, api: requests.Session) -> dict[str, dict[str, float]]:
    """The spawner's own stages (``hepsdesk_spawn_duration_seconds`` on the hub's metrics), mean
    seconds by profile: where the hub's part of a start went."""
    sums: dict[tuple[str, str], list[float]] = {}
    for family in text_string_to_metric_families(api.get(f"{url}/hub/metrics", timeout=30).text):
        if family.name != "hepsdesk_spawn_duration_seconds":
            continue
        for sample in family.samples:
            kind = sample.name.rsplit("_", 1)[-1]
            if kind in ("sum", "count"):
                sums.setdefault((sample.labels["profile"], sample.labels["stage"]), [0.0, 0.0])[
                    kind == "count"] = sample.value
    means: dict[str, dict[str, float]] = {}
    for (profile, stage), (total, count) in sums.items():
        if count:
            means.setdefault(profile, {})[stage] = round(total / count, 2)
    return means


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--state-dir", default=os.environ.get("HEPSDESK_DEVCLOUD_STATE", str(ROOT / ".devcloud")))
    parser.add_argument("--ports", default="18300,18381,19700,18766,3637",
                        help="hub, hub API, SSO, direct desktop, storage LDAP (default: %(default)s)")
    parser.add_argument("--ad-address", default="127.0.0.3",
                        help="loopback address of the benchmark's own AD DC (default: %(default)s)")
    parser.add_argument("--profile", default="desktop",
                        help="comma-separated profiles (environments) to start, side by side (default: %(default)s)")
    parser.add_argument("--no-pool", dest="pool", action="store_false",
                        help="no warm-pool rounds (and the repository's profiles, for --profile)")
    parser.add_argument("--warm-only", action="store_true",
                        help="only the pooled (warm) rounds, for work on the warm start: prints their keys alone")
    parser.add_argument("--idle-seconds", type=float, default=20, help="how long a pooled VM's idle cost is measured")
    args = parser.parse_args()
    profiles = [p for p in args.profile.split(",") if p]
    if args.warm_only and not args.pool:
        parser.error("--warm-only needs the pool")
    if args.pool and profiles != ["desktop"]:
        parser.error("--profile other than 'desktop' needs --no-pool (the pool's rounds use the analysis desktop)")
    port, hub_port, oidc_port, direct_port, storage_ldap_port = free_ports(parser, args.ports)
    cloud, reused = dev_cloud(args.state_dir)
    tag = f"hepsdesk-bench-{os.getpid()}"
    hub_dir = Path(tempfile.mkdtemp(prefix="hepsdesk-bench-hub-"))
    demo = Demo(DemoOptions(cloud_state_dir=Path(args.state_dir), hub_state_dir=hub_dir, port=port,
                            hub_port=hub_port, oidc_port=oidc_port, ad_address=args.ad_address,
                            storage_ldap_port=storage_ldap_port, hub_tag=tag), stream=sys.stderr)
    if args.pool:
        (hub_dir / "profiles.json").write_text(json.dumps(POOLED_PROFILES))
        demo.hub.extra_env.update({"HEPSDESK_PROFILES_FILE": str(hub_dir / "profiles.json"),
                                   "HEPSDESK_WARM_POOL": json.dumps({"desktop-pooled": 1})})
    per_round = 1 if args.warm_only else 2 + len(profiles) + (1 if args.pool else 0)
    progress = StepProgress("spawn_e2e", total=3 + per_round * args.rounds + (1 if args.pool else 0),
                            stream=sys.stderr)
    measured = {profile: {"labs": [], "frames": []} for profile in profiles}
    directs, bares, colds, warms, idle, spawner_stages = [], [], [], [], None, {}
    failed = True
    try:
        with progress.step("Starting the directories (Samba AD DC, storage LDAP)"):
            demo.start_directories()
        with progress.step("Starting the SSO and the hub"):
            passwords = demo.ensure_users()
            demo.hub.start()
        api = requests.Session()
        api.headers["Authorization"] = f"token {demo.hub.secrets()['admin_token']}"
        with sync_playwright() as playwright:
            browser = launch(playwright)
            context = new_context(browser)
            page = context.new_page()
            with progress.step(f"Signing in as {USER}"):
                sign_in(page, demo.hub.url, USER, passwords[USER], next_path="/hub/home")
                page.wait_for_url(re.compile(r".*/hub/home"), timeout=60_000)
                demo.run_storage_agent(every=0)  # the new account's home, as the demo's agent makes it
            for round_ in range(1, args.rounds + 1):
                for profile in [] if args.warm_only else profiles:
                    with progress.step(f"Round {round_}: Start {profile} -> JupyterLab -> Desktop -> first frame"):
                        lab, frame = hub_round(page, demo.hub.url, api, profile)
                        measured[profile]["labs"].append(lab)
                        measured[profile]["frames"].append(frame)
                if not args.warm_only:
                    with progress.step(f"Round {round_}: the desktop alone, opened directly"):
                        directs.append(direct_round(browser, direct_port))
                    with progress.step(f"Round {round_}: a bare VM, create to ACTIVE"):
                        bares.append(bare_vm_round(cloud, tag))
                if args.pool and not args.warm_only:
                    with progress.step(f"Round {round_}: portal link -> desktop, a new VM (cold)"):
                        colds.append(portal_round(page, demo.hub.url, api, "desktop"))
                if args.pool:
                    with progress.step(f"Round {round_}: portal link -> desktop, a pooled VM (warm)"):
                        wait_pool_ready(cloud, tag)
                        warms.append(portal_round(page, demo.hub.url, api, "desktop-pooled"))
            spawner_stages = hub_spawn_stages(demo.hub.url, api)
            if args.pool:
                with progress.step(f"A pooled VM waiting, idle, for {args.idle_seconds:.0f} s"):
                    idle = guest_cost(cloud, wait_pool_ready(cloud, tag), args.idle_seconds)
            browser.close()
        failed = False
    finally:
        demo.stop()
        admin = cloud.connect("devcloud-admin")
        for server in admin.compute.servers(all_projects=True):
            if (server.metadata or {}).get("hepsdesk-hub") == tag:
                admin.compute.delete_server(server)
        if failed:
            print(f"spawn_e2e: the hub's state and logs are kept in {hub_dir}", file=sys.stderr)
        else:
            shutil.rmtree(hub_dir, ignore_errors=True)
        if not reused:
            cloud.down()

    result = {"rounds": args.rounds}
    if not args.warm_only:
        labs, frames = measured[profiles[0]]["labs"], measured[profiles[0]]["frames"]
        result.update({
            "profile": profiles[0],
            "click_to_lab_s": median(labs),
            "click_to_first_frame_s": median(frames),
            "vm_create_to_active_s": median(bares),
            "direct_first_frame_s": median(directs),
            "lab_to_vm_active_ratio": round(statistics.median(labs) / statistics.median(bares), 2),
            "first_frame_to_direct_ratio": round(statistics.median(frames) / statistics.median(directs), 2),
            "samples": {"click_to_lab_s": [round(v, 2) for v in labs],
                        "click_to_first_frame_s": [round(v, 2) for v in frames],
                        "vm_create_to_active_s": [round(v, 2) for v in bares],
                        "direct_first_frame_s": [round(v, 2) for v in directs]},
            "profiles": {profile: {"click_to_lab_s": median(m["labs"]), "click_to_first_frame_s": median(m["frames"]),
                                   "samples": {"click_to_lab_s": [round(v, 2) for v in m["labs"]],
                                               "click_to_first_frame_s": [round(v, 2) for v in m["frames"]]}}
                         for profile, m in measured.items()},
            "lab_to_first_profile_ratio": {profile: round(statistics.median(m["labs"]) / statistics.median(labs), 2)
                                           for profile, m in measured.items()},
        })
    if args.pool:
        samples = result.setdefault("samples", {})
        for name, rounds in (("cold", colds), ("warm", warms)):
            if rounds:
                result[f"{name}_click_to_first_frame_s"] = median([frame for frame, _ in rounds])
                result[f"{name}_stages_s"] = {stage: median([s[stage] for _, s in rounds]) for stage, _ in STAGES}
                samples[f"{name}_click_to_first_frame_s"] = [round(frame, 2) for frame, _ in rounds]
        if colds:
            result["warm_to_cold_ratio"] = round(result["warm_click_to_first_frame_s"]
                                                 / result["cold_click_to_first_frame_s"], 2)
        result["spawner_stages_s"] = spawner_stages
        result.update({"pool_idle_cores_per_vm": round(idle[0], 3), "pool_idle_pss_mb_per_vm": round(idle[1], 1)})
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
