"""Where the desktop's control socket is, and the directories it refuses to use."""

from __future__ import annotations

import os

import pytest

from desktop_proxy.control_socket import UnsafeDirectory, control_socket_path, ensure_private_dir


@pytest.fixture
def environment(monkeypatch):
    monkeypatch.delenv("HEPSDESK_DESKTOP_CONTROL", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    return monkeypatch


def test_the_variable_wins(environment, tmp_path):
    environment.setenv("HEPSDESK_DESKTOP_CONTROL", str(tmp_path / "d.sock"))
    environment.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert control_socket_path() == str(tmp_path / "d.sock")


def test_a_private_runtime_directory_of_the_user_is_used(environment, tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    environment.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert control_socket_path() == str(runtime / "hepsdesk-desktop.sock")


@pytest.mark.parametrize("runtime", ["missing", "open", "theirs", "link", "relative"])
def test_else_a_directory_in_tmp_named_for_the_uid(environment, tmp_path, runtime):
    directory = tmp_path / "run"
    if runtime == "open":
        directory.mkdir(mode=0o755)
    elif runtime == "theirs":
        if os.getuid() != 0:
            pytest.skip("needs root to give a directory to another user")
        directory.mkdir(mode=0o700)
        os.chown(directory, 65534, 65534)
    elif runtime == "link":
        (tmp_path / "real").mkdir(mode=0o700)
        directory.symlink_to(tmp_path / "real")
    value = "run" if runtime == "relative" else str(directory)
    environment.setenv("XDG_RUNTIME_DIR", value)
    assert control_socket_path() == f"/tmp/hepsdesk-{os.getuid()}/desktop.sock"
    environment.delenv("XDG_RUNTIME_DIR")
    assert control_socket_path() == f"/tmp/hepsdesk-{os.getuid()}/desktop.sock"


def test_the_directory_is_made_private(tmp_path):
    socket = tmp_path / "hepsdesk-0" / "desktop.sock"
    assert ensure_private_dir(str(socket)) == str(tmp_path / "hepsdesk-0")
    assert (tmp_path / "hepsdesk-0").stat().st_mode & 0o777 == 0o700
    assert ensure_private_dir(str(socket)) == str(tmp_path / "hepsdesk-0")  # again: it is there and fine


def test_a_directory_open_to_others_is_refused(tmp_path):
    (tmp_path / "squat").mkdir()
    (tmp_path / "squat").chmod(0o755)
    with pytest.raises(UnsafeDirectory, match="open to other users .mode 755.*chmod 700"):
        ensure_private_dir(str(tmp_path / "squat" / "desktop.sock"))


def test_a_directory_of_another_user_is_refused(tmp_path):
    if os.getuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    (tmp_path / "squat").mkdir(mode=0o700)
    os.chown(tmp_path / "squat", 65534, 65534)
    with pytest.raises(UnsafeDirectory, match="belongs to uid 65534, not to you"):
        ensure_private_dir(str(tmp_path / "squat" / "desktop.sock"))


def test_a_symbolic_link_is_refused_even_to_a_private_directory(tmp_path):
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "squat").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafeDirectory, match="symbolic link"):
        ensure_private_dir(str(tmp_path / "squat" / "desktop.sock"))


def test_a_file_in_the_way_is_refused(tmp_path):
    (tmp_path / "squat").write_text("")
    with pytest.raises(UnsafeDirectory, match="not a directory"):
        ensure_private_dir(str(tmp_path / "squat" / "desktop.sock"))
