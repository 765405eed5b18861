"""The hub on a server database: some of the spawner's tests again, with the hub's database on
the dev cloud's MariaDB (``db_url`` "mysql+pymysql://...") instead of SQLite.

The tests are the same functions as in their own modules; pytest runs them here with this
module's fixtures (``hub``, ``hub_api``, ``quota_hub``: one hub on MariaDB).
"""

from __future__ import annotations

import json

import pytest

from hepsdesk_devcloud.databases import mariadb_sql

from ..conftest import SESSION, HubAPI, running_hub
from .test_quotas import (
    PROFILES,
    QUOTAS,
    test_two_members_at_the_groups_gpu_quota_get_one_vm_and_one_clear_refusal,  # noqa: F401
)
from .test_spawner import test_spawn_reports_real_stages_serves_and_stop_removes_the_vm  # noqa: F401

pytestmark = pytest.mark.devcloud


@pytest.fixture(scope="module")
def hub(devcloud, tmp_path_factory):
    directory = tmp_path_factory.mktemp("mariadb-hub")
    (directory / "quotas.json").write_text(json.dumps(QUOTAS))
    database = f"jupyterhub_{SESSION.lower()}"
    db_url = devcloud.hub_database(database, fresh=True)
    profiles = [*PROFILES, {"slug": "desktop", "display_name": "Analysis desktop", "image": "hepsdesk-desktop",
                            "flavor": "c1.small"}]
    with running_hub(devcloud, directory, (18350, 18351, 19350), profiles=profiles, HEPSDESK_HUB_DB_URL=db_url,
                     HEPSDESK_GROUP_QUOTAS_FILE=str(directory / "quotas.json")) as hub:
        # The hub keeps its state in MariaDB, not in a SQLite file.
        assert "spawners" in mariadb_sql(devcloud.settings, f"SHOW TABLES FROM {database}").split()
        assert not list(hub.state_dir.glob("*.sqlite"))
        yield hub


@pytest.fixture(scope="module")
def hub_api(hub) -> HubAPI:
    return hub.api


@pytest.fixture(scope="module")
def quota_hub(hub):
    return hub
