"""The desktop session's files (desktop_proxy/session.py): menu entries that run exactly the
image's commands, the file manager's action, bookmarks that never replace the user's."""

from __future__ import annotations

import shlex
import subprocess
import xml.etree.ElementTree as ElementTree

from desktop_proxy.apps import App, ImageApps
from desktop_proxy.session import Session, desktop_entry_exec, write_bookmarks, write_menu_entries, write_send_action


def test_an_exec_line_keeps_every_argument_as_it_was():
    command = ["/opt/my apps/run", "--title=it's \"ok\"", "$HOME", "`id`", "50%", "a\\b", "plain"]
    line = desktop_entry_exec(command)
    # The specification's quoting is the shell's double quotes, with %% for a literal %.
    assert "50%%" in line
    parsed = subprocess.run(["sh", "-c", "printf '%s\\0' " + line.replace("%%", "%")], capture_output=True,
                            check=True).stdout.split(b"\0")[:-1]
    assert [arg.decode() for arg in parsed] == command


def test_menu_entries_for_the_images_applications(tmp_path):
    apps = ImageApps(image="hepsdesk-neutron", title="Neutron", applications={
        "sasview": App("sasview", "SasView", "6.1.3", ("/img/open_sasview",), "SasView", (".dat",), "/img/sas.svg")})
    write_menu_entries(tmp_path, apps)
    entry = (tmp_path / "hepsdesk-sasview.desktop").read_text()
    assert entry.startswith("[Desktop Entry]\n") and "Exec=/img/open_sasview\n" in entry
    assert "Name=SasView\n" in entry and "Icon=/img/sas.svg\n" in entry and "Comment=SasView 6.1.3\n" in entry
    assert "Hidden=true" in (tmp_path / "xfce4-mail-reader.desktop").read_text()


def test_the_send_action_is_valid_xml_whatever_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin & <tools>"))
    (tmp_path / "bin & <tools>").mkdir()
    send = tmp_path / "bin & <tools>" / "hepsdesk-send"
    send.write_text("#!/bin/sh\n")
    send.chmod(0o755)
    write_send_action(tmp_path / "uca.xml")
    [action] = ElementTree.parse(tmp_path / "uca.xml").getroot()
    assert action.findtext("name") == "Send to my computer"
    assert shlex.split(action.findtext("command")) == [str(send), "%F"]


def test_bookmarks_are_written_once_and_never_over_the_users(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    bookmarks = tmp_path / ".config" / "gtk-3.0" / "bookmarks"
    write_bookmarks(bookmarks, [str(tmp_path), "/data/p-2026-001", "/data/p 2026 7"])
    assert bookmarks.read_text() == "file:///data/p-2026-001 p-2026-001\nfile:///data/p%202026%207 p 2026 7\n"
    bookmarks.write_text("file:///home/me/mine mine\n")
    write_bookmarks(bookmarks, ["/data/p-2026-002"])
    assert bookmarks.read_text() == "file:///home/me/mine mine\n"


def test_no_session_makes_nothing_and_openbox_has_no_bus(tmp_path):
    assert Session("").prepare() == {} and Session("").window_manager == []
    openbox = Session("openbox")
    assert openbox.window_manager == ["openbox"] and openbox.bus == []
