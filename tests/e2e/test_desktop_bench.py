"""The desktop benchmark's short version, as a test of behaviour (not of speed): hepsdesk and
TigerVNC + noVNC show the moving scene in Chromium with readable stamps, a still desktop
sends no video, and pictures come while every core is busy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_short_desktop_benchmark_streams_motion_and_sends_nothing_when_idle():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "desktop_stream.py"), "--quick",
                           "--ports", "18798,18799,18800,18801"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    rows = {(r["system"], r["scene"]): r for r in result["results"]}
    systems = ("hepsdesk", "tigervnc-novnc")
    assert set(rows) == {(s, c) for s in systems for c in ("motion", "idle", "contended")}
    for system in systems:
        motion = rows[(system, "motion")]
        assert motion["resolution"] == "1280x720" and motion["frames"] >= 10, motion
        assert 0 < motion["latency_p50_ms"] <= motion["latency_p95_ms"] < 2000, motion
        assert motion["unreadable"] <= motion["frames"] // 4, motion
        assert motion["mbps"] > 0 and motion["cpu_cores"] > 0, motion
    # The frames the browser presented are new pictures the desktop sent, some of them read.
    motion = rows[("hepsdesk", "motion")]
    assert 0 < motion["stamps_read_fps"] <= motion["fps"] <= motion["sender"]["encoded_fps"] + 1, motion
    # Where the desktop server's time went: each stage of each picture, and the cores by stage.
    sender = motion["sender"]
    assert sender["encoder"] == "libx264" and all(sender[k] > 0 for k in ("grab_ms", "convert_ms", "encode_ms")), sender
    assert sender["cores"]["capture"] > 0 and sender["cores"]["encode"] > 0 and sender["cores"]["loop"] > 0, sender
    assert sum(sender["cores"].values()) <= motion["streamer_cores"] * 1.2 + 0.05, motion  # /stats is the process
    idle = rows[("hepsdesk", "idle")]
    assert idle["fps"] == 0 and idle["mbps"] < 0.01, idle  # not one video frame
    assert {r["scene"] for r in result["ratios"]} == {"motion", "idle", "contended"}
    # Under a hog on every core (at the user's programs' niceness), pictures still come.
    contended = rows[("hepsdesk", "contended")]
    assert contended["frames"] >= 10 and contended["browser_raised"] is True, contended
    assert not subprocess.run(["pgrep", "-f", "while time.monotonic"], capture_output=True).stdout, "no hog left"


def test_the_short_sharing_benchmark_gives_every_viewer_the_stream():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "desktop_share.py"), "--seconds", "2",
                           "--settle", "1", "--viewers", "0,2", "--ports", "18802,18803"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert [row["viewers"] for row in result["rows"]] == [0, 2]
    alone, shared = result["rows"]
    assert alone["owner_fps"] > 5 and shared["owner_fps"] > 5, result["rows"]
    assert len(shared["viewer_fps"]) == 2 and min(shared["viewer_fps"]) > 5, shared  # through /share/ws
    assert result["per_viewer_cores"] is not None and result["per_viewer_cores_fit"] is not None, result
    assert result["owner_fps_ratio_min"] > 0, result
