"""The warm pool's settings: sizes by schedule, and pools that cannot be kept (more GPUs than
the cloud has, a GPU model without a cap) refused with a message, nothing else changed."""

from datetime import datetime

import pytest
from traitlets.config import Config

from hepsdesk_spawner.pool import PoolConfigError, gpu_shortfall, parse_pool_gpus, parse_warm_pool
from hepsdesk_spawner.profiles import parse_profiles
from hepsdesk_spawner.spawner import OpenStackSpawner

MONDAY_9, MONDAY_21, SATURDAY_9 = datetime(2026, 12, 7, 9), datetime(2026, 12, 7, 21), datetime(2026, 12, 12, 9)


def test_sizes_follow_the_schedule():
    pools = parse_warm_pool({"imaging": 1, "gpu": {"size": 0, "schedule": [
        {"days": "mon-fri", "hours": "8-20", "size": 3}, {"days": "sat,sun", "hours": "0-24", "size": 1}]}})
    assert pools["imaging"].size_at(MONDAY_9) == 1
    assert [pools["gpu"].size_at(t) for t in (MONDAY_9, MONDAY_21, SATURDAY_9)] == [3, 0, 1]
    assert pools["gpu"].most == 3
    assert parse_warm_pool({"x": {"size": 1, "schedule": [{"days": "fri-mon", "hours": "0-24", "size": 2}]}})[
        "x"].size_at(MONDAY_9) == 2  # a range across the week's end


@pytest.mark.parametrize("entries, message", [
    ({"imaging": -1}, "a size is a whole number"),
    ({"imaging": True}, "give a size"),
    ({"imaging": {"size": 1, "sizes": 2}}, "unknown key(s) sizes"),
    ({"imaging": {"schedule": [{"days": "weekdays", "hours": "8-20", "size": 1}]}}, "are not like 'mon-fri'"),
    ({"imaging": {"schedule": [{"days": "mon", "hours": "20-8", "size": 1}]}}, "are not like '8-20'"),
    ({"imaging": {"schedule": [{"days": "mon", "size": 1}]}}, "give days"),
    (["imaging"], "must map profile slugs"),
])
def test_wrong_pool_settings_are_refused_with_what_is_wrong(entries, message):
    with pytest.raises(PoolConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_warm_pool(entries)


def test_the_hub_refuses_a_wrong_pool_setting_at_start():
    config = Config({"OpenStackSpawner": {"warm_pool": {"imaging": "two"}}})
    with pytest.raises(Exception, match="warm_pool: profile 'imaging': give a size"):
        OpenStackSpawner(config=config)
    with pytest.raises(Exception, match="warm_pool_gpus.*a size"):
        OpenStackSpawner(config=Config({"OpenStackSpawner": {"warm_pool_gpus": {"A100": -2}}}))
    assert parse_pool_gpus({"A100": 2}) == {"A100": 2}


PROFILES = {p.slug: p for p in parse_profiles([
    {"slug": "cpu", "display_name": "CPU", "image": "i", "flavor": "f"},
    {"slug": "a100", "display_name": "A100", "image": "i", "flavor": "g", "gpu_model": "A100", "gpu_count": 2},
    {"slug": "a100-one", "display_name": "A100", "image": "i", "flavor": "g1", "gpu_model": "A100", "gpu_count": 1},
])}


def test_a_pool_with_more_gpus_than_the_cloud_has_is_not_kept():
    pools = parse_warm_pool({"cpu": 5, "a100": 1, "a100-one": {"size": 0, "schedule": [
        {"days": "mon-fri", "hours": "8-20", "size": 2}]}})
    # At its largest: 1 x 2 + 2 x 1 = 4 A100 pooled.
    assert gpu_shortfall(pools, PROFILES, {"A100": 4}, {"A100": 4}) == {}
    problems = gpu_shortfall(pools, PROFILES, {"A100": 3}, {"A100": 4})
    assert set(problems) == {"a100", "a100-one"}
    assert "would hold 4 A100 GPUs at its largest, but the cloud has 3" in problems["a100"]
    # A GPU profile is pooled only within a cap of its own.
    assert "pool it within warm_pool_gpus" in gpu_shortfall(pools, PROFILES, {"A100": 8}, {})["a100"]


def test_the_dashboard_shows_a_pooled_vm_as_the_pools_not_as_an_orphan():
    from hepsdesk_dashboard.view import vm_row
    from hepsdesk_spawner.desktop_reports import DesktopReports
    from hepsdesk_spawner.pool import POOL_KEY, POOL_PROFILE
    from hepsdesk_spawner.watcher import ServerView

    pooled = ServerView("id-1", "hepsdesk-pool-imaging-1", "ACTIVE", None, "",
                        metadata={"hepsdesk-hub": "t", POOL_PROFILE: "imaging", POOL_KEY: "ab" * 32})
    row = vm_row(pooled, None, DesktopReports(), 0)
    assert row["pooled"] and not row["orphan"] and row["actions"] == []  # the pool keeps its own
    claimed = ServerView("id-1", "jupyter-alice", "ACTIVE", None, "", metadata={"hepsdesk-user": "alice"})
    assert vm_row(claimed, None, DesktopReports(), 0)["orphan"]  # no server names it: the reaper's
