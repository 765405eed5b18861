"""The program a VM runs as root to fetch its environment (and a pooled VM its user) from the
hub (``guest_start.py``), against a hostile hub: a man in the middle, or anything else that
answers at the hub's address. This is the one place a fake hub stands in for the real one: the
real hub cannot be made to answer with shell (tests/integration/test_shelve.py drives the real
exchange). Nothing in an answer may ever run; a non-https hub is refused unless allowed."""

from __future__ import annotations

import http.server
import json
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hepsdesk_spawner import guest_start
from hepsdesk_spawner.guest_start import ALLOW_HTTP_HUB, NO_ENV_MARKER, POOL_FAILED_MARKER


class HostileHub:
    """Answers every POST with ``body`` (status 200), and counts the requests."""

    def __init__(self, body: bytes):
        hub = self
        self.requests = 0

        class Answer(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                hub.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hub/api"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def fetch(tmp_path: Path, hub_url: str, allow_http: bool = True) -> subprocess.CompletedProcess:
    env_file = tmp_path / "singleuser.env"
    env = {"JUPYTERHUB_API_URL": hub_url, "JUPYTERHUB_API_TOKEN": "old-token", "JUPYTERHUB_USER": "alice"}
    if allow_http:
        env[ALLOW_HTTP_HUB] = "1"
    env_file.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    return run_guest(tmp_path, "fetch_env")


def run_guest(tmp_path: Path, step: str) -> subprocess.CompletedProcess:
    """``guest_start.<step>()`` as the VM runs it (its files under ``tmp_path``); exit 4 and the
    console line when it refuses."""
    program = (f"import sys; sys.path.insert(0, {str(Path(guest_start.__file__).parent)!r})\n"
               "import guest_start as g\n"
               f"g.ENV_FILE, g.PLAN_FILE, g.POOL_FILE = {str(tmp_path / 'singleuser.env')!r}, "
               f"{str(tmp_path / 'plan.json')!r}, {str(tmp_path / 'pool.json')!r}\n"
               f"try:\n    g.{step}()\nexcept g.Refused as e:\n    print(e.marker, e)\n    sys.exit(e.status)\n")
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)


def sourced(tmp_path: Path, name: str) -> str:
    """``$name`` after a shell sources the env file, as the start script does."""
    return subprocess.run(["sh", "-c", f'. "$0"; printf %s "${name}"', str(tmp_path / "singleuser.env")],
                          capture_output=True, text=True, timeout=10, cwd=tmp_path).stdout


RAN = "hepsdesk-ran"  # a file the hostile values try to create


@pytest.fixture
def hostile_hub():
    hubs = []

    def make(body: bytes) -> HostileHub:
        hubs.append(HostileHub(body))
        return hubs[-1]

    yield make
    for hub in hubs:
        hub.close()


def test_shell_in_the_values_of_an_answer_stays_text(tmp_path, hostile_hub):
    values = {"JUPYTERHUB_API_TOKEN": f"x'; touch {RAN}; '", "A": f"$(touch {RAN})", "B": f"`touch {RAN}`",
              "C": f"line\ntouch {RAN}", "D": "it's \"quoted\" \\ $HOME ; | &"}
    hub = hostile_hub(json.dumps({"env": values}).encode())
    done = fetch(tmp_path, hub.url)
    assert done.returncode == 0, done.stdout + done.stderr
    for name, value in values.items():
        assert sourced(tmp_path, name) == value
    assert not (tmp_path / RAN).exists(), "a value of the hub's answer ran as a command"


@pytest.mark.parametrize("body", [
    f"export A=1\ntouch {RAN}\n".encode(),  # the old protocol: a file to source
    json.dumps({"env": {f"A;touch {RAN}": "1"}}).encode(),
    json.dumps({"env": {"A": 1}}).encode(),
    json.dumps({"env": {"A": "nul\0byte"}}).encode(),
    json.dumps({"env": [["A", "1"]]}).encode(),
    json.dumps(["env"]).encode(),
    b"\xff\xfe",
])
def test_an_answer_that_is_not_an_environment_is_refused_and_changes_nothing(tmp_path, hostile_hub, body):
    hub = hostile_hub(body)
    done = fetch(tmp_path, hub.url)
    assert done.returncode == 4 and f"{NO_ENV_MARKER} the hub's answer is not an environment" in done.stdout, done
    assert sourced(tmp_path, "JUPYTERHUB_API_TOKEN") == "old-token", "the env file was kept"
    assert not (tmp_path / RAN).exists()


def test_a_hub_that_is_not_https_is_refused_before_any_request_unless_allowed(tmp_path, hostile_hub):
    hub = hostile_hub(json.dumps({"env": {"JUPYTERHUB_API_TOKEN": "new-token"}}).encode())
    done = fetch(tmp_path, hub.url, allow_http=False)
    assert done.returncode == 4 and "not https" in done.stdout and hub.requests == 0, done
    assert sourced(tmp_path, "JUPYTERHUB_API_TOKEN") == "old-token"
    assert fetch(tmp_path, hub.url, allow_http=True).returncode == 0
    assert hub.requests == 1 and sourced(tmp_path, "JUPYTERHUB_API_TOKEN") == "new-token"


def claim(tmp_path: Path, hub_url: str) -> subprocess.CompletedProcess:
    (tmp_path / "pool.json").write_text(json.dumps({"api_url": hub_url, "key": "pool-key", "allow_http": True}))
    return run_guest(tmp_path, "wait_for_claim")


PLAN = {"command": ["jupyterhub-singleuser"], "workdir": "/home/alice", "mounts": [],
        "identity": {"username": "alice", "uid": 21001, "gid": 21001, "group": "alice", "home": "/home/alice",
                     "shell": "/bin/bash", "groups": []}}


def test_a_pooled_vm_takes_its_user_as_data(tmp_path, hostile_hub):
    env = {"JUPYTERHUB_API_TOKEN": f"x'; touch {RAN}; '", "JUPYTERHUB_USER": "alice"}
    hub = hostile_hub(json.dumps({"env": env, "plan": PLAN}).encode())
    done = claim(tmp_path, hub.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "plan.json").read_text()) == PLAN
    assert sourced(tmp_path, "JUPYTERHUB_API_TOKEN") == env["JUPYTERHUB_API_TOKEN"]
    assert not (tmp_path / "pool.json").exists(), "the pool key is dead after the claim"
    assert not (tmp_path / RAN).exists()


@pytest.mark.parametrize("plan, why", [
    ({**PLAN, "identity": {**PLAN["identity"], "username": "alice; touch x"}}, "the user name is not a POSIX name"),
    ({**PLAN, "identity": {**PLAN["identity"], "uid": 0}}, "the uid is not a POSIX id"),
    ({**PLAN, "workdir": "../etc"}, "the workdir is not an absolute path"),
    ({**PLAN, "mounts": [{"source": "-oremount", "target": "/x", "fstype": "nfs4", "options": "rw"}]}, "starts with"),
    ({**PLAN, "command": "jupyterhub-singleuser; touch x"}, "no command"),
])
def test_a_plan_the_hub_cannot_have_made_is_refused_and_nothing_is_written(tmp_path, hostile_hub, plan, why):
    hub = hostile_hub(json.dumps({"env": {"A": "1"}, "plan": plan}).encode())
    done = claim(tmp_path, hub.url)
    assert done.returncode == 6 and why in done.stdout, done
    assert not (tmp_path / "plan.json").exists() and not (tmp_path / "singleuser.env").exists()


def test_a_pooled_vm_the_hub_does_not_know_stops_waiting(tmp_path):
    hub = HostileHub(b'{"status": 403, "message": "Not a pooled VM of this hub."}')
    try:
        hub.server.RequestHandlerClass.do_POST = lambda self: (self.rfile.read(int(self.headers["Content-Length"])),
                                                              self.send_error(403, "Not a pooled VM of this hub."))
        done = claim(tmp_path, hub.url)
    finally:
        hub.close()
    assert done.returncode == 4 and f"{POOL_FAILED_MARKER} HTTP 403" in done.stdout, done


def test_the_zygote_loads_no_module_of_jupyterhub_ahead():
    """What a pooled VM's zygote imports while it waits for a user (``PRELOAD``) must not import
    JupyterHub's own modules: they read the server's environment into class defaults at import,
    and would be imported again once the zygote has it."""
    code = ("import importlib, json, sys\n"
            f"for name in {guest_start.PRELOAD!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in " f"{guest_start.LATE!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout) == []
