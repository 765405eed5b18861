"""Fixtures for tests against the real dev cloud (the session's ``devcloud`` is in tests/conftest.py).

Every server a test creates is tagged with the session's id and deleted when the test ends,
and the compute log and the servers' console logs are printed only when a test fails.
"""

from __future__ import annotations

import base64

import openstack
import pytest

from ..conftest import SESSION

TAG = "hepsdesk-test"


@pytest.fixture(scope="session")
def conn(devcloud) -> openstack.connection.Connection:
    """The hub's view: the member user of the hub's project."""
    return devcloud.connect()


@pytest.fixture(scope="session")
def admin_conn(devcloud) -> openstack.connection.Connection:
    return devcloud.connect("devcloud-admin")


class ServerFactory:
    """Boots servers for one test and deletes them (and waits until they are gone) after it."""

    def __init__(self, conn, devcloud, test_name: str):
        self.conn = conn
        self.devcloud = devcloud
        self.prefix = f"t-{SESSION}-{test_name[:30]}"
        self.created: list[str] = []
        self.ports: list[str] = []
        self._network = None

    @property
    def network(self):
        if self._network is None:
            self._network = self.conn.network.find_network("hepsdesk-net")
        return self._network

    def create(self, user_data: str | None = None, flavor: str = "c1.small", image: str = "hepsdesk-desktop",
               port=None, wait: bool = True, conn=None, name: str | None = None, timeout: int = 120,
               tags: list[str] | None = None):
        conn = conn or self.conn
        kwargs = {
            "name": name or f"{self.prefix}-{len(self.created)}",
            "image_id": conn.image.find_image(image, ignore_missing=False).id,
            "flavor_id": conn.compute.find_flavor(flavor, ignore_missing=False).id,
            "metadata": {TAG: SESSION},
            "networks": [{"port": port.id}] if port else [{"uuid": self.network.id}],
        }
        if tags:
            kwargs["tags"] = tags
        if user_data is not None:
            kwargs["user_data"] = base64.b64encode(user_data.encode()).decode()
        server = conn.compute.create_server(**kwargs)
        self.created.append(server.id)
        if wait:
            server = conn.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], wait=timeout)
        return server

    def create_port(self):
        port = self.conn.network.create_port(network_id=self.network.id, name=f"{self.prefix}-port")
        self.ports.append(port.id)
        return port

    def cleanup(self) -> None:
        admin = self.devcloud.connect("devcloud-admin")
        for server_id in self.created:
            try:
                admin.compute.delete_server(server_id, ignore_missing=True)
            except openstack.exceptions.SDKException:
                pass
        for server_id in self.created:
            server = admin.compute.find_server(server_id, all_projects=True)
            if server is not None:
                admin.compute.wait_for_delete(server, wait=120)
        for port_id in self.ports:
            admin.network.delete_port(port_id, ignore_missing=True)


@pytest.fixture
def servers(conn, devcloud, request):
    factory = ServerFactory(conn, devcloud, request.node.name.replace("[", "-").replace("]", ""))
    yield factory
    factory.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or "devcloud" not in item.fixturenames:
        return
    cloud = item.funcargs.get("devcloud")
    lines = ["", "--- nova-compute log (tail) ---", *cloud.log_lines("nova-compute", 30)]
    factory = item.funcargs.get("servers")
    for server_id in getattr(factory, "created", []):
        console = cloud.guest_dir(server_id) / "console.log"
        if console.exists():
            lines += [f"--- console of {server_id} ---", *console.read_text(errors="replace").splitlines()[-20:]]
    report.sections.append(("dev cloud state", "\n".join(lines)))
