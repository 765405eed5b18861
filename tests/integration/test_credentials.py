"""The spawner's credentials: an application credential of the hub's project works as well as a
password, and no secret reaches a log line even with every OpenStack logger at DEBUG."""

from __future__ import annotations

import asyncio
import logging

import pytest
import yaml

from hepsdesk_spawner.cloud import OpenStackClient

from ..conftest import SESSION

pytestmark = pytest.mark.devcloud


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_an_application_credential_serves_the_spawner_and_never_reaches_a_log(devcloud, conn, tmp_path):
    credential = conn.identity.create_application_credential(
        user=conn.current_user_id, name=f"hepsdesk-hub-{SESSION}", description="hepsdesk tests")
    secret = credential.secret
    try:
        clouds = yaml.safe_load(devcloud.settings.clouds_yaml.read_text())["clouds"]
        member = clouds["devcloud"]
        cloud = {"auth_type": "v3applicationcredential", "region_name": member.get("region_name", "RegionOne"),
                 "auth": {"auth_url": member["auth"]["auth_url"], "application_credential_id": credential.id,
                          "application_credential_secret": secret}}
        path = tmp_path / "clouds.yaml"
        path.write_text(yaml.safe_dump({"clouds": {"hub-appcred": cloud}}))

        capture = Capture()
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(capture)
        root.setLevel(logging.DEBUG)
        try:
            client = OpenStackClient("hub-appcred", str(path))
            network = asyncio.run(client.find_network("hepsdesk-net"))
            servers = asyncio.run(client.find_servers("no-such-server", {}))
        finally:
            root.removeHandler(capture)
            root.setLevel(old_level)
        assert network is not None and isinstance(servers, list)
        assert any("POST" in line and "/auth/tokens" in line for line in capture.lines), \
            "the token request was logged (so the check below looked at it)"
        assert not [line for line in capture.lines if secret in line], "the credential's secret is in a log line"
    finally:
        conn.identity.delete_application_credential(conn.current_user_id, credential)
