"""Bad input to `hepsdesk devcloud`: a one-line cause, the log behind it, nothing half-started."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hepsdesk_devcloud import DevCloud, DevCloudError, DevCloudSettings, installer

pytestmark = pytest.mark.devcloud
HEPSDESK = str(Path(sys.executable).with_name("hepsdesk"))


def other_cloud(devcloud, tmp_path: Path, port_offset: int) -> DevCloud:
    """A second cloud in a temporary state dir, sharing the installed services."""
    settings = DevCloudSettings.load(tmp_path / "state", venv_dir=devcloud.settings.venv_dir,
                                     port_offset=port_offset)
    return DevCloud(settings, stream=io.StringIO(), user_clouds_yaml=None)


def assert_nothing_left(cloud: DevCloud) -> None:
    running = [name for name in cloud.services if cloud.processes.running(name)]
    assert running == [], f"left running: {running}"
    leftovers = []
    for pid in filter(str.isdigit, [p.name for p in Path("/proc").iterdir()]):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(cloud.settings.state_dir).encode() in cmdline:
            leftovers.append(cmdline.replace(b"\0", b" ")[:120])
    assert leftovers == [], f"processes still using the state dir: {leftovers}"


def test_busy_port_is_named_with_its_owner_and_nothing_stays_up(devcloud, tmp_path):
    cloud = other_cloud(devcloud, tmp_path, port_offset=3000)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", cloud.settings.port("epmd")))
        squatter.listen()
        with pytest.raises(DevCloudError) as failure:
            cloud.up()
    message = str(failure.value)
    assert f"port {cloud.settings.port('epmd')} for Erlang port mapper on 127.0.0.1 is already in use by" in message
    assert f"(pid {__import__('os').getpid()})" in message, "the owner of the port is named"
    assert "--port-offset" in message
    assert_nothing_left(cloud)


def test_a_service_that_fails_to_start_reports_its_log_and_is_rolled_back(devcloud):
    """A broken glance-image-import.conf (an optional file an admin adds): Glance exits."""
    broken = devcloud.settings.etc_dir / "glance" / "glance-image-import.conf"
    devcloud.processes.stop("glance")
    broken.write_text("[DEFAULT\nthis is not an ini file\n")
    try:
        with pytest.raises(DevCloudError) as failure:
            devcloud.up()
        cause = failure.value.cause
        assert cause.startswith("Glance (images) exited during start-up")
        assert "glance-image-import.conf" in str(failure.value), "the log tail shows the offending file"
        assert "\n" not in cause, "the cause is one line"
        assert failure.value.details, "the tail of the service's log comes with it"
        assert not devcloud.processes.running("glance")
        assert devcloud.processes.running("keystone"), "services this run did not start are left alone"
    finally:
        broken.unlink()
        devcloud.up()
    assert all(entry["healthy"] for entry in devcloud.status())


def test_unwritable_state_dir_is_a_one_line_error_from_the_cli(devcloud, tmp_path):
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    result = subprocess.run([HEPSDESK, "devcloud", "up", "--state-dir", str(not_a_dir / "state")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("hepsdesk: error:")]
    assert error and "is not writable" in error[0] and "--state-dir" in error[0]


def test_a_debian_package_that_cannot_be_installed_is_named(devcloud, tmp_path, monkeypatch):
    """As root, missing packages are installed with apt-get; one that does not exist fails clearly."""
    if __import__("os").geteuid() != 0:
        pytest.skip("installing Debian packages needs root; without root `up` prints the apt-get command")
    monkeypatch.setitem(installer.DEBIAN_PACKAGES, "hepsdesk-no-such-package", "/nonexistent/hepsdesk")
    cloud = other_cloud(devcloud, tmp_path, port_offset=3000)
    with pytest.raises(DevCloudError, match="apt-get could not install hepsdesk-no-such-package"):
        cloud.up()
    assert_nothing_left(cloud)


def test_status_json_is_one_object_per_service(devcloud):
    result = subprocess.run([HEPSDESK, "devcloud", "status", "--json", "--state-dir", str(devcloud.settings.state_dir)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert [entry["service"] for entry in entries] == list(devcloud.services)
    assert all(entry["healthy"] is True for entry in entries)


def test_a_second_up_is_a_no_op(devcloud):
    before = {name: devcloud.processes.get(name).pid for name in devcloud.services}
    report = devcloud.up()
    assert report.already_running and report.started == []
    assert {name: devcloud.processes.get(name).pid for name in devcloud.services} == before


def test_purge_refuses_a_directory_that_is_not_a_dev_cloud(tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    result = subprocess.run([HEPSDESK, "devcloud", "down", "--purge", "--state-dir", str(precious)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "does not look like a dev cloud's state directory" in result.stderr
    assert (precious / "chapter1.tex").read_text() == "years of work"
