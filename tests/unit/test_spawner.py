"""The OpenStackSpawner without a cloud: its saved state, poll's answers, the options it takes,
the settings it refuses, and the kind of failure JupyterHub counts. (Everything that talks to
the cloud is in tests/integration.)"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from jupyterhub.spawner import SpawnException
from tornado import web
from traitlets import TraitError
from traitlets.config import Config

from hepsdesk_spawner import OpenStackSpawner, check_config
from hepsdesk_spawner.capacity import allocation_query
from hepsdesk_spawner.errors import CloudFailure, SpawnError
from hepsdesk_spawner.idle import activity_interval
from hepsdesk_spawner.settings import ConfigError
from hepsdesk_spawner.site import CloudSite
from hepsdesk_spawner.state import ServerState
from hepsdesk_spawner.watcher import ServerView

PROFILES = [
    {"slug": "desktop", "display_name": "Desktop", "image": "i", "flavor": "f", "default": True},
    {"slug": "gpu", "display_name": "GPU", "image": "i", "flavor": "g", "allowed_groups": ["heps-users"]},
    {"slug": "keep", "display_name": "Kept", "image": "i", "flavor": "f", "stop_mode": "shelve", "idle_timeout": 60},
]


class User:
    """What the spawner reads of JupyterHub's User."""

    def __init__(self, name="alice", groups=(), admin=False):
        self.name, self.admin, self.url = name, admin, f"/user/{name}/"
        self.groups = [SimpleNamespace(name=g) for g in groups]

    async def get_auth_state(self):
        return {}


CLOUDS_YAML = Path(tempfile.mkdtemp(prefix="hepsdesk-unit-")) / "clouds.yaml"
atexit.register(shutil.rmtree, CLOUDS_YAML.parent, True)
CLOUDS_YAML.write_text("clouds:\n  devcloud:\n    auth: {auth_url: 'http://127.0.0.1:1/v3'}\n")


def spawner(user_options=None, **settings) -> OpenStackSpawner:
    config = Config()
    for name, value in {"cloud": "devcloud", "clouds_yaml": str(CLOUDS_YAML), "profiles": PROFILES,
                        **settings}.items():
        setattr(config.OpenStackSpawner, name, value)
    made = OpenStackSpawner(config=config, user=User(), user_options=user_options or {})
    return made


# the saved state

def test_the_state_round_trips_and_says_which_version_wrote_it():
    one = spawner()
    one.vm = ServerState(server_id="s1", port_id="p1", address="127.200.0.5", floating_ip_id="f1",
                         floating_address="127.201.0.5", profile="keep", idle_timeout=60, shelved=True,
                         resume_key="k" * 64, mounts_digest="d" * 64)
    saved = one.get_state()
    assert saved["server_id"] == "s1" and saved["version"]
    two = spawner()
    two.load_state(saved)
    assert two.vm == one.vm


def test_no_vm_saves_nothing_and_an_older_state_loads():
    assert spawner().get_state() == {}
    older = {"server_id": "s1", "port_id": "p1", "address": "127.200.0.5", "profile": "desktop",
             "idle_timeout": "300", "shelved": "yes", "something_new": 1}  # 0.1 wrote no version
    loaded = spawner()
    loaded.load_state(older)
    assert (loaded.vm.server_id, loaded.vm.idle_timeout, loaded.vm.shelved) == ("s1", 300, False)


def test_a_stop_forgets_the_vm_unless_it_is_shelved():
    kept, gone = spawner(), spawner()
    kept.vm = ServerState(server_id="s1", port_id="p1", profile="keep", shelved=True)
    gone.vm = ServerState(server_id="s2", port_id="p2", profile="desktop")
    kept.clear_state()
    gone.clear_state()
    assert (kept.vm.server_id, kept.vm.port_id, kept.vm.profile) == ("s1", "p1", "keep")
    assert gone.vm == ServerState()


# poll's answers

class ListedWatcher:
    """The site's watcher as it would be after a list that holds ``views``."""

    def __init__(self, views):
        self.views = {v.id: v for v in views}

    async def get(self, server_id, wait=30.0):
        return self.views.get(server_id)

    async def stop(self):
        pass


def view(status: str, server_id: str = "s1") -> ServerView:
    return ServerView(id=server_id, name="jupyter-alice", status=status, task_state=None, fault="")


@pytest.mark.parametrize("status, code, shelved", [
    ("ACTIVE", None, False), ("BUILD", None, False), ("SHELVED_OFFLOADED", 0, True), ("SHUTOFF", 0, False),
    ("ERROR", 0, False),
])
async def test_poll_is_none_while_the_vm_runs_and_0_once_it_stopped(status, code, shelved):
    polled = spawner()
    polled.vm = ServerState(server_id="s1", profile="desktop")
    polled.site.watcher = ListedWatcher([view(status)])
    polled.resources.delete = _deleted = Recorder()  # a dead VM is deleted in the background
    assert await polled.poll() == code
    assert polled.vm.shelved is shelved
    for task in list(polled._deleting.values()):
        await task
    assert _deleted.calls == ([({"s1"}, set())] if status in ("SHUTOFF", "ERROR") else [])
    await polled.site.close()


async def test_poll_without_a_vm_is_0_and_an_idle_server_is_stopped():
    assert await spawner().poll() == 0
    idle = spawner()
    idle.vm = ServerState(server_id="s1", profile="keep", idle_timeout=60)
    idle.orm_spawner = SimpleNamespace(last_activity=None, server=None, name="")
    idle.site.watcher = ListedWatcher([view("ACTIVE")])
    idle.shelving.shelve = Recorder(result=True)
    assert await idle.poll() == 0, "idle for longer than its profile's 60 s"
    await idle._deleting["s1"]
    assert idle.vm.shelved and idle.shelving.shelve.calls == [()], "a shelve profile shelves its idle VM"
    await idle.site.close()


class Recorder:
    def __init__(self, result=None):
        self.calls, self.result = [], result

    async def __call__(self, *args):
        self.calls.append(args)
        return self.result


# the options a start takes

def test_the_form_gives_one_value_per_field():
    assert spawner().run_options_from_form({"profile": ["gpu"]}) == {"profile": "gpu"}


@pytest.mark.parametrize("options, message, status", [
    ({"profile": "desktop", "image": "evil"}, "Unknown option(s) 'image'", 400),
    ({"profile": "gpu"}, "The environment gpu does not exist or is not available to you", 403),
    ({"profile": "<script>"}, "The environment (an invalid name) does not exist", 403),
    ({"profile": ["desktop"]}, "must be given by its name", 403),
])
async def test_options_are_checked_before_anything_is_made(options, message, status):
    with pytest.raises(SpawnError) as refused:
        await spawner(user_options=options).choose_profile()
    assert message in refused.value.jupyterhub_message and refused.value.status_code == status


async def test_the_default_profile_is_chosen_without_options():
    assert (await spawner().choose_profile()).slug == "desktop"


# the settings it refuses

@pytest.mark.parametrize("name, value, message", [
    ("media_ports", "32768", "OpenStackSpawner.media_ports: '32768' is not a port range"),
    ("media_ports", "60999-32768", "with LOW <= HIGH"),
    ("hub_cidrs", ["10.0.0.300/32"], "OpenStackSpawner.hub_cidrs: '10.0.0.300/32' is not an address range"),
    ("media_cidrs", ["campus"], "OpenStackSpawner.media_cidrs"),
    ("profiles", [{"slug": "x", "display_name": "X", "image": "i"}], "OpenStackSpawner.profiles: profile 'x': missing"),
    ("data_mounts", [{"source": "nfs:/h/{user}", "target": "/h"}], "unknown placeholder(s) user"),
    ("server_name_template", "vm-{user}", "OpenStackSpawner.server_name_template: unknown placeholder(s) user"),
    ("security_group", "{hub}-vms", "unknown placeholder(s) hub"),
    ("hub_tag", "a,b", "OpenStackSpawner.hub_tag: 'a,b' is not a tag"),
    ("singleuser_port", 70000, "OpenStackSpawner.singleuser_port: 70000 is not a port"),
    ("min_posix_id", 0, "no identity may be root"),
    ("delete_timeout", 0, "OpenStackSpawner.delete_timeout: must be more than 0 seconds"),
    ("start_deadline", -1, "cannot be negative"),
    ("notebook_dir", "work", "is not an absolute path"),
    ("extra_user_data_env", {"MY VAR": "x"}, "cannot be environment variable names"),
])
def test_a_wrong_setting_is_refused_with_its_name(name, value, message):
    with pytest.raises(TraitError, match=None) as refused:
        spawner(**{name: value})
    assert message in str(refused.value)


def test_settings_that_contradict_each_other_are_refused(tmp_path):
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  heps:\n    auth: {auth_url: 'http://127.0.0.1:5000/v3'}\n")
    for settings, message in [
        ({"cloud": ""}, "OpenStackSpawner.cloud: not set"),
        ({"cloud": "nowhere", "clouds_yaml": str(clouds)}, "OpenStackSpawner.cloud: the cloud 'nowhere' is not usable"),
        ({"cloud": "heps", "clouds_yaml": str(tmp_path / "missing.yaml")}, "OpenStackSpawner.clouds_yaml:"),
        ({"cloud": "heps", "clouds_yaml": str(clouds), "capacity_cloud": "reader"},
         "OpenStackSpawner.capacity_cloud: the cloud 'reader'"),
        ({"cloud": "heps", "clouds_yaml": str(clouds), "connect_to": "floating"},
         "OpenStackSpawner.connect_to: 'floating' needs OpenStackSpawner.floating_ip_network"),
    ]:
        with pytest.raises(ConfigError) as refused:
            spawner(**settings).check_configuration()
        assert message in str(refused.value), settings
    spawner(cloud="heps", clouds_yaml=str(clouds)).check_configuration()


async def test_a_start_with_a_wrong_configuration_fails_before_anything_is_made():
    """A hub that does not call check_config: the first start says what to configure (and counts)."""
    with pytest.raises(CloudFailure) as failed:
        await spawner(cloud="").start()
    assert "The hub is misconfigured" in failed.value.jupyterhub_message
    assert "OpenStackSpawner.cloud: not set" in str(failed.value)


def test_the_hub_stops_at_start_naming_the_setting(tmp_path):
    config = Config()
    config.JupyterHub.spawner_class = "openstack"
    config.OpenStackSpawner.cloud = "heps"
    config.OpenStackSpawner.media_ports = "any"
    with pytest.raises(SystemExit, match="configuration is wrong: OpenStackSpawner.media_ports: 'any'"):
        check_config(config)
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  heps:\n    auth: {auth_url: 'http://127.0.0.1:5000/v3'}\n")
    config = Config()
    config.JupyterHub.spawner_class = "hepsdesk_spawner.OpenStackSpawner"
    config.OpenStackSpawner.update(cloud="heps", clouds_yaml=str(clouds), profiles=PROFILES)
    # Every VM asks the hub for its environment at boot, shelving or not.
    for profiles in (PROFILES, PROFILES[:1]):
        config.OpenStackSpawner.profiles = profiles
        with pytest.raises(SystemExit, match="JupyterHub.extra_handlers lacks hepsdesk_spawner.resume.handlers"):
            check_config(config)
    from hepsdesk_spawner.resume import handlers
    config.JupyterHub.extra_handlers = [*handlers]
    config.TurnRelay.urls = ["turn:turn.example:3478"]
    with pytest.raises(SystemExit, match="TurnRelay .urls, secret_file, policy.: a TURN server needs its shared"):
        check_config(config)
    config.TurnRelay.secret_file = str(tmp_path / "absent")
    with pytest.raises(SystemExit, match="cannot read the TURN secret file"):
        check_config(config)
    (tmp_path / "turn-secret").write_text("s3cret")
    config.TurnRelay.secret_file = str(tmp_path / "turn-secret")
    assert check_config(config) is None, "no event loop: checked, no site built"


def test_only_a_hub_running_the_openstack_spawner_has_its_settings_checked():
    class FacilitySpawner(OpenStackSpawner):
        pass

    config = Config()
    config.OpenStackSpawner.media_ports = "any"
    for other in ("simple", "jupyterhub.spawner.LocalProcessSpawner", None):
        if other:
            config.JupyterHub.spawner_class = other
        assert check_config(config) is None, f"{other}: another spawner, nothing to check"
    config.JupyterHub.spawner_class = FacilitySpawner
    with pytest.raises(SystemExit, match="OpenStackSpawner.media_ports"):
        check_config(config)
    config.JupyterHub.spawner_class = "no_such_module.Spawner"
    with pytest.raises(SystemExit, match="JupyterHub.spawner_class: cannot load 'no_such_module.Spawner'"):
        check_config(config)


async def test_the_hub_wide_site_is_one_per_cloud_and_hub_tag():
    site, other = spawner().site, spawner(hub_tag="another-hub").site
    assert spawner().site is site and other is not site
    assert site.watcher.hub_tag == "hepsdesk-hub" and other.watcher.hub_tag == "another-hub"
    assert site.capacity.client.executor is site.client.executor, "one thread pool for all of a site's calls"
    await site.close()
    await other.close()
    new = spawner().site
    assert new is not site, "a closed site is replaced"
    await new.close()


# what JupyterHub counts

def test_only_refusals_are_spawn_exceptions_and_failures_count():
    """JupyterHub counts a failed start towards consecutive_failure_limit unless it is a
    SpawnException or an HTTP error below 500 (handlers/base.py, _track_failure_count)."""
    refusal = SpawnError("No machine has 1 free A100 GPU right now.", reason="no_capacity", status_code=503)
    failure = CloudFailure("The cloud could not start your VM.", detail="SDKError")
    assert isinstance(refusal, SpawnException)
    assert not isinstance(failure, SpawnException) and isinstance(failure, web.HTTPError)
    assert failure.status_code >= 500 and failure.jupyterhub_message == "The cloud could not start your VM."
    assert "SDKError" in str(failure), "the hub's log gets the detail"


# what Placement is asked after a NoValidHost

def test_placement_is_asked_for_what_the_flavor_needs():
    assert allocation_query(2, 4096, 20, {}) == {"limit": "1", "resources": "DISK_GB:20,MEMORY_MB:4096,VCPU:2"}
    gpu = allocation_query(8, 65536, 0, {"resources1:VGPU": "1", "trait1:CUSTOM_GPU_A100": "required",
                                         "hw:cpu_policy": "dedicated"})
    assert gpu == {"limit": "1", "resources": "MEMORY_MB:65536,VCPU:8", "resources1": "VGPU:1",
                   "required1": "CUSTOM_GPU_A100"}
    two = allocation_query(1, 512, 0, {"resources1:VGPU": "1", "resources2:VGPU": "1", "group_policy": "isolate"})
    assert two["group_policy"] == "isolate"


# the identity contract

def test_the_authenticator_loads_without_the_spawner_or_openstacksdk():
    code = textwrap.dedent("""
        import sys
        import hepsdesk_auth
        from hepsdesk_auth.authenticator import HEPSAuthenticator
        assert hepsdesk_auth.HEPSAuthenticator is HEPSAuthenticator
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("openstack", "hepsdesk_spawner"))
        print(loaded)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_site_registry_needs_a_running_loop():
    with pytest.raises(RuntimeError):
        CloudSite.of(spawner())


def test_no_private_name_of_jupyterhub_is_overridden():
    """JupyterHub keeps its own state in underscore names on the Spawner (``_failed``,
    ``_spawn_future``, ...): a spawner method of the same name breaks the hub silently."""
    from jupyterhub.spawner import Spawner

    from hepsdesk_spawner.settings import SpawnerSettings
    from hepsdesk_spawner.spawner import OpenStackSpawner as Made

    traitlets_internals = {"_descriptors", "_instance_inits", "_static_immutable_initial_values", "_traits",
                           "_trait_default_generators", "_all_trait_default_generators"}
    private = {n for n in dir(Spawner) if n.startswith("_") and not n.startswith("__")} - traitlets_internals
    assert private & (set(vars(Made)) | set(vars(SpawnerSettings))) == set()


def test_every_package_of_the_repository_is_in_the_wheel():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    wheel = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    packages = {p.parent.name for p in root.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert packages <= set(wheel["packages"]), packages - set(wheel["packages"])


def test_every_benchmark_has_a_short_form_in_the_tests():
    """No benchmark may rot: each script in benchmarks/ that prints a result is run by a test."""
    root = Path(__file__).resolve().parents[2]
    tests = "\n".join(p.read_text() for p in (root / "tests").rglob("*.py"))
    benchmarks = [p.name for p in (root / "benchmarks").glob("*.py") if "print(json.dumps(" in p.read_text()]
    assert {"spawner_scale.py", "spawn_e2e.py", "devcloud_boot.py", "login.py", "desktop_stream.py"} <= set(benchmarks)
    assert [b for b in benchmarks if f'"{b}"' not in tests] == []


def test_the_desktop_reports_input_often_enough_for_the_profiles_idle_timeout():
    assert [activity_interval(t) for t in (20, 60, 300, 3600, 86400)] == [5, 10, 50, 60, 60]
