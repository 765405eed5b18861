"""A guest workload for the tests: a web server on the server's own loopback address.

At every boot, the user-data's per-boot script reads the address from cloud-init's instance
data, remembers the first boot in a file on the VM's disk (so a test can tell a preserved disk
from a fresh one), counts the boots, and serves ``/srv/www`` on port 8080 in the background,
so cloud-init finishes.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import yaml

BOOT_SCRIPT = """#!/bin/sh
ADDR=$(python3 -c 'import json; print(json.load(open("/run/cloud-init/instance-data.json"))["v1"]["local_ipv4"])')
mkdir -p /srv/www
[ -f /srv/www/first-boot ] || od -An -N8 -tx1 /dev/urandom | tr -d ' \\n' > /srv/www/first-boot
echo "$(hostname) booted $(date +%s%N)" > /srv/www/boot
echo boot >> /srv/www/boots
cd /srv/www && nohup python3 -m http.server --bind "$ADDR" 8080 > /var/log/web.log 2>&1 &
echo web server started on "$ADDR"
"""
# As on a real cloud: the web server is started by a per-boot script (cloud-init runs it at
# every boot), runcmd runs once per instance (its count is served as /instance-runs).
WEB_USER_DATA = "#cloud-config\n" + yaml.safe_dump({
    "write_files": [{"path": "/var/lib/cloud/scripts/per-boot/web", "permissions": "0755", "content": BOOT_SCRIPT}],
    "runcmd": ["mkdir -p /srv/www && echo run >> /srv/www/instance-runs"],
}, default_flow_style=False)
PORT = 8080


def address(server) -> str:
    return server.addresses["hepsdesk-net"][0]["addr"]


def get(addr: str, path: str = "/boot", timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(f"http://{addr}:{PORT}{path}", timeout=timeout) as response:
            return response.read().decode()
    except (urllib.error.URLError, OSError):
        return None


def wait_answer(addr: str, path: str = "/boot", timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = get(addr, path)
        if body is not None:
            return body
        time.sleep(0.3)
    raise AssertionError(f"nothing answered on http://{addr}:{PORT}{path} within {timeout:.0f} s")


def wait_silent(addr: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get(addr, timeout=0.5) is None:
            return
        time.sleep(0.3)
    raise AssertionError(f"http://{addr}:{PORT} still answers after {timeout:.0f} s")
