"""The spawn benchmark's short version, as a test of behaviour (not of speed): in Chromium, a
new user signs in (their account and home are made), starts a server, sees JupyterLab's
launcher and the desktop's first frame, on a fresh checkout's setup; the analysis desktop and
the largest beamline image side by side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.devcloud


def test_the_short_spawn_benchmark_reaches_jupyterlab_and_the_desktop(devcloud):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "spawn_e2e.py"), "--rounds", "1",
                           "--state-dir", str(devcloud.settings.state_dir),
                           "--ports", "18310,18391,19710,18767,3638", "--ad-address", "127.0.0.4",
                           "--profile", "desktop,neutron", "--no-pool"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    for key in ("click_to_lab_s", "click_to_first_frame_s", "vm_create_to_active_s", "direct_first_frame_s"):
        assert 0 < result[key] < 300, (key, result)
    assert result["lab_to_vm_active_ratio"] > 1, "JupyterLab comes after the VM is ACTIVE"
    # The largest image beside the analysis desktop, in the same run.
    assert result["profile"] == "desktop" and set(result["profiles"]) == {"desktop", "neutron"}, result
    for key in ("click_to_lab_s", "click_to_first_frame_s"):
        assert 0 < result["profiles"]["neutron"][key] < 300, (key, result)
    assert result["lab_to_first_profile_ratio"]["desktop"] == 1.0
