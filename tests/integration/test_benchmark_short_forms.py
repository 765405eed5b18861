"""The short forms of the benchmarks that need the dev cloud, as tests of behaviour (not of
speed): each runs through, prints the JSON its issue names, and leaves nothing behind. (The
desktop's and the login's short forms are in e2e/test_desktop_bench.py and
test_login_bench.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.devcloud


def run(benchmark: str, *args: str, timeout: float = 400) -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / benchmark), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_spawner_scale_short(devcloud):
    result = run("spawner_scale.py", "--servers", "10", "--spawns", "4", "--rounds", "1", "--poll-interval", "3",
                 "--state-dir", str(devcloud.settings.state_dir), "--ports", "18610,18691,19952")
    assert result["spawns_ready"] == 4 and result["spawns_failed"] == 0, result
    assert result["polls_answered_running"] == result["naive_polls_answered_running"] == 10, result
    assert result["api_calls_per_poll_interval"] < result["naive_api_calls_per_poll_interval"], result
    for key in ("loop_lag_p99_ms", "loop_lag_max_ms", "idle_process_lag_p99_ms", "spawns_per_minute"):
        assert result[key] is not None and result[key] >= 0, (key, result)
    assert result["leaked_resources"] == 0 and result["setup_servers_remade"] == 0, result


def test_devcloud_boot_short(devcloud, conn):
    result = run("devcloud_boot.py", "--reuse", str(devcloud.settings.state_dir), "--sequential", "2",
                 "--concurrent", "2")
    assert 0 < result["create_to_active_p50_s"] <= result["create_to_active_p95_s"] < 120, result
    assert result["control_plane_rss_mb"] > 100, result
    assert result["up_cold_s"] is None and result["up_warm_s"] is None, "measured on the running cloud"
    assert [s.name for s in conn.compute.servers(name="^bench-")] == []
