"""The hub's TURN settings (hepsdesk_spawner/turn.py): credentials per user for 10 minutes,
settings that cannot work refused with what to change."""

from __future__ import annotations

import pytest
from traitlets import TraitError

from desktop_proxy.ice_servers import IceConfigError
from hepsdesk_spawner.turn import TurnRelay


def test_each_session_gets_credentials_of_its_user_for_ten_minutes(tmp_path):
    (tmp_path / "secret").write_text("s3cret\n")
    relay = TurnRelay(urls=["stun:turn.example:3478", "turn:turn.example:3478?transport=udp"],
                      secret_file=str(tmp_path / "secret"), policy="relay")
    servers = relay.servers_for("alice")
    username, _ = servers.credentials(now=1_000_000)
    assert username == f"{1_000_000 + 600}:alice" and servers.policy == "relay"
    session = servers.for_session()
    assert session[1]["username"].endswith(":alice") and "s3cret" not in repr(session)
    assert TurnRelay().servers_for("bob").for_session() == [], "none configured: the browser goes direct"


def test_turn_settings_that_cannot_work_are_refused(tmp_path):
    with pytest.raises(IceConfigError, match="needs its shared secret"):
        TurnRelay(urls=["turn:turn.example:3478"]).servers_for("alice")
    with pytest.raises(IceConfigError, match="cannot read the TURN secret file"):
        TurnRelay(urls=["turn:turn.example:3478"], secret_file=str(tmp_path / "absent")).servers_for("alice")
    with pytest.raises(TraitError, match="60 to 3600 seconds"):
        TurnRelay(ttl=86400)
