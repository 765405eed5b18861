"""STUN/TURN settings of the desktop and the TURN credentials it mints per session."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from desktop_proxy.ice_servers import IceConfigError, IceServers


def test_turn_credentials_follow_the_shared_secret_scheme_and_expire(tmp_path):
    secret = tmp_path / "turn-secret"
    secret.write_text("s3cret-value\n")
    servers = IceServers.from_settings("stun:stun.example:3478, turn:turn.example:3478?transport=udp",
                                       str(secret), user="alice", policy="relay")
    username, password = servers.credentials(now=1_000_000)
    assert username == f"{1_000_000 + 600}:alice"  # 10 minutes: a reconnect asks for fresh ones
    # What coturn (use-auth-secret) computes to check it: base64(HMAC-SHA1(secret, username)).
    expected = base64.b64encode(hmac.new(b"s3cret-value", username.encode(), hashlib.sha1).digest()).decode()
    assert password == expected
    session = servers.for_session()
    assert session[0] == {"urls": ["stun:stun.example:3478"]}
    assert session[1]["urls"] == ["turn:turn.example:3478?transport=udp"]
    assert session[1]["username"].endswith(":alice") and session[1]["credential"] != "s3cret-value"
    assert "s3cret" not in repr(servers)
    configuration = IceServers.configuration(session)
    assert [s.urls for s in configuration.iceServers] == [session[0]["urls"], session[1]["urls"]]
    assert IceServers().for_session() == []  # none configured: host candidates only


@pytest.mark.parametrize("urls, secret, policy, message", [
    ("http://turn.example", "", "all", "no STUN or TURN URL"),
    ("turn:turn.example:3478", "", "all", "needs its shared secret"),
    ("stun:stun.example:3478", "", "relay", "relay-only ICE needs a TURN server"),
    ("turn:turn.example:3478", "x", "sometimes", "unknown ICE transport policy"),
])
def test_ice_settings_that_cannot_work_are_refused_with_what_to_change(urls, secret, policy, message):
    with pytest.raises(IceConfigError, match=message):
        IceServers(urls=(urls,), secret=secret, policy=policy)


def test_a_missing_or_empty_turn_secret_file_is_named(tmp_path):
    with pytest.raises(IceConfigError, match="cannot read the TURN secret file"):
        IceServers.from_settings("turn:turn.example:3478", str(tmp_path / "absent"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(IceConfigError, match="is empty"):
        IceServers.from_settings("turn:turn.example:3478", str(tmp_path / "empty"))
    # A user name with ':' would change the credentials' meaning: it is replaced.
    (tmp_path / "secret").write_text("x")
    assert IceServers.from_settings("turn:t:3478", str(tmp_path / "secret"), user="a:b").user == "a_b"
