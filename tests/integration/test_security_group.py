"""The security group the spawner manages, against the dev cloud's Neutron."""

from __future__ import annotations

import asyncio

import pytest

from hepsdesk_spawner.cloud import OpenStackClient

from ..conftest import SESSION

pytestmark = pytest.mark.devcloud

WANTED = {("tcp", 8888, 8888, "10.20.0.5/32"), ("udp", 32768, 60999, "0.0.0.0/0")}


def ingress(conn, group_id: str) -> set[tuple]:
    return {(r.protocol, r.port_range_min, r.port_range_max, r.remote_ip_prefix)
            for r in conn.network.security_group_rules(security_group_id=group_id, direction="ingress")}


def test_the_managed_group_gets_exactly_its_rules_and_hand_made_holes_are_closed(devcloud, conn):
    name = f"sg-{SESSION}"
    client = OpenStackClient("devcloud", str(devcloud.settings.clouds_yaml))
    group = conn.network.create_security_group(name=name)
    try:
        # Someone opened SSH to the world by hand.
        conn.network.create_security_group_rule(security_group_id=group.id, direction="ingress", ethertype="IPv4",
                                                protocol="tcp", port_range_min=22, port_range_max=22,
                                                remote_ip_prefix="0.0.0.0/0")
        assert asyncio.run(client.ensure_security_group(name, "test", WANTED)) == group.id
        assert ingress(conn, group.id) == WANTED
        egress = list(conn.network.security_group_rules(security_group_id=group.id, direction="egress"))
        assert egress, "Neutron's default egress rules stay"

        rules_before = {r.id for r in conn.network.security_group_rules(security_group_id=group.id)}
        assert asyncio.run(client.ensure_security_group(name, "test", WANTED)) == group.id
        assert {r.id for r in conn.network.security_group_rules(security_group_id=group.id)} == rules_before, \
            "a second ensure changes nothing"
    finally:
        conn.network.delete_security_group(group, ignore_missing=True)


def test_a_missing_group_is_created(devcloud, conn):
    name = f"sg-new-{SESSION}"
    client = OpenStackClient("devcloud", str(devcloud.settings.clouds_yaml))
    group_id = asyncio.run(client.ensure_security_group(name, "created by the test", WANTED))
    try:
        assert conn.network.get_security_group(group_id).name == name
        assert ingress(conn, group_id) == WANTED
    finally:
        conn.network.delete_security_group(group_id, ignore_missing=True)
