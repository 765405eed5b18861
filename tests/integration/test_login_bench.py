"""The login benchmark's short version, as a test of behaviour (not of speed): both hubs sign
people in, accounts are made once each, no uidNumber is given twice, and the JSON has the keys
issue 7 names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"plain_oidc_p95_ms", "existing_user_p50_ms", "existing_user_p95_ms", "first_login_p95_ms",
        "loop_lag_p99_ms", "duplicate_uid_numbers"}


def test_the_short_login_benchmark_signs_everyone_in_and_gives_no_number_twice():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "login.py"), "--users", "6", "--first", "3",
                           "--rounds", "1"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert KEYS <= set(result), result
    assert result["duplicate_uid_numbers"] == 0
    assert result["sign_ins_per_hub"] == 3 and result["concurrent_sign_ins"] == 6
    assert 0 < result["plain_oidc_p95_ms"] and 0 < result["existing_user_p95_ms"] and 0 < result["first_login_p95_ms"]
    assert result["loop_lag_p99_ms"] is not None
