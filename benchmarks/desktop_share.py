"""What each added viewer of a shared desktop costs the desktop server, at 1080p motion.

    .venv/bin/python benchmarks/desktop_share.py [--seconds 8] [--settle 4] [--viewers 0,1,2,3,4,5]
                                                 [--ports 18785,18786] [--path /share/ws]

On an X server of 1920x1080 (Xtigervnc, as ``desktop_stream.py`` starts it) the ``motion`` scene
of ``desktop_scenes.py`` (full screen, photo-like, redrawn 59.9 times a second, each picture
stamped with its time) is streamed by the desktop server (``python -m desktop_proxy --display
:D --port N``), which captures and encodes the screen once and hands the coded pictures to
every viewer (fan-out): what a viewer adds is its own packetizing, SRTP and sending, RTCP.
(A guest whose link carries less than the owner's picture is moved to a second, smaller
encode, the low tier: ``viewer_tiers`` and ``sender`` show whether that happened.)

- The **owner**: headless Chromium (Playwright) shows the desktop's page, and its frame rate is
  read from the stamps in the pictures it presents (``desktop_stream.MEASURE_JS``).
- The **viewers**: 0, 1, ... 5 aiortc receivers, all in one child process of their own (this
  file with ``--viewers-process``), so neither their CPU nor this driver's GIL is the desktop
  server's. They stand for other people's machines, so that process runs at ``--viewers-nice``
  (10): on two cores it takes what the desktop and the owner's browser leave, rather than
  taking from them what it would not take elsewhere. Each opens
  ``ws://127.0.0.1:PORT/share/ws``, says who it is (``{"type": "viewer", "name", "role":
  "viewer", "share": "bench"}``), gets the ICE servers (it uses none: all is on
  127.0.0.1), offers a receive-only video transceiver (H.264 first) and an ``input`` data
  channel once ICE gathering is complete, and takes the answer. The viewers do not decode:
  aiortc's decoder thread is replaced, in that process only, by one that counts the pictures
  its jitter buffer completes and throws them away; RTP packets and payload bytes are counted as
  they arrive. Everything else of aiortc's receiver runs (SRTP, NACK, RTCP reports, REMB).

For each number of viewers, after ``--settle`` seconds, ``--seconds`` are measured: the desktop
server's CPU (its process, all its threads: utime + stime from /proc), the owner's frame rate,
and what every viewer received.

Prints one JSON object:

- ``resolution``, ``scene``;
- ``rows``: one per number of viewers: ``viewers``, ``server_cores``, ``owner_fps``,
  ``viewer_fps`` (pictures completed per second, each viewer), ``viewer_mbps`` (RTP payload),
  and for context: ``server_loop_cores`` (the server's main thread, its event loop, where all a
  viewer costs is spent: RTP, SRTP, sending, RTCP, signalling) and
  ``server_capture_encode_cores`` (its other threads), ``owner_latency_p50_ms``,
  ``owner_mbps``, ``owner_browser`` (WebRTC's inbound-rtp figures), ``sender`` (the server's
  ``/stats``: encoded and grabbed fps, target and sending bitrate, the low tier's when the
  server has one), ``viewer_tiers`` (each guest's tier, from ``/stats``), ``viewer_packets_per_s``,
  ``xserver_cores``, ``scene_cores``, ``viewers_process_cores``, ``browser_cores`` (Chromium),
  ``machine_busy_cores`` (the whole machine) and ``others_cores`` (of it, what this benchmark's
  processes did not use: someone else's load, which makes the row worthless), ``seconds``;
- ``per_viewer_cores``: the most, over N = 1..5, of (server_cores(N) - server_cores(0)) / N;
  ``per_viewer_cores_by_n`` each of them; ``per_viewer_loop_cores`` (``_by_n``) the same of the
  event loop alone: capture and encode follow the frame rate, which a machine short of CPU lowers
  (x264 then sheds work), so the whole process can cost less with more viewers;
  ``per_viewer_cores_fit`` and ``per_viewer_loop_cores_fit``: the least-squares slope of the
  same over all rows (one number from every measurement, not the noisiest difference);
- ``owner_fps_alone`` (N = 0) and ``owner_fps_ratio_min`` (the least owner_fps(N) / owner_fps(0));
- ``others_cores_max``, ``machine`` (cores, load average), ``settings``.

The issue's target: at most 0.05 cores per viewer up to 5 viewers, and the owner's frame rate
within 10 % of what it is alone. This reports; it does not tune. Everything it starts (each in
a process group of its own), it stops; it listens and connects on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import Bar, free_ports, percentile  # noqa: E402
from benchmarks.desktop_scenes import STAMP_BITS, STAMP_BLOCK, STAMP_LEFT  # noqa: E402
from benchmarks.desktop_stream import (  # noqa: E402
    CLOCK_TICKS,
    MEASURE_JS,
    SCENE_FPS,
    Bench,
    cpu_seconds,
    descendants,
    machine,
    process_name,
    wait_for_port,
)
from desktop_proxy.control_socket import ENVIRONMENT as CONTROL_SOCKET  # noqa: E402
from tests.e2e.hubflow import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

RESOLUTION = "1920x1080"
SCENE = "motion"
SHARE = "bench"

# --------------------------------------------------------------------------------------------
# The viewers (``--viewers-process``): aiortc receivers that count what they get, undecoded.


class Received:
    """What one viewer got: RTP packets and payload bytes, and the pictures its jitter buffer
    completed (what a decoder would have been given)."""

    def __init__(self) -> None:
        self.packets = self.bytes = self.frames = 0


PACKETS: dict[object, Received] = {}  # an RTCRtpReceiver's counters
PICTURES: dict[object, Received] = {}  # by the queue of the receiver's track (what aiortc gives its decoder)


def counting_decoder(loop, input_q: queue.Queue, output_q, decode_error) -> None:
    """aiortc's ``decoder_worker``, minus the decoding: count the completed pictures, drop them."""
    received = PICTURES.setdefault(output_q, Received())
    while True:
        task = input_q.get()
        if task is None:
            break
        _, encoded_frame = task
        received.frames += 1
        received.bytes += len(encoded_frame.data)


def stop_decoding() -> None:
    """In this process only: aiortc receivers count instead of decoding."""
    from aiortc import rtcrtpreceiver

    rtcrtpreceiver.decoder_worker = counting_decoder
    handle = rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet

    async def count_and_handle(self, packet, arrival_time_ms: int) -> None:
        received = PACKETS.setdefault(self, Received())
        received.packets += 1
        received.bytes += len(packet.payload)
        await handle(self, packet, arrival_time_ms)

    rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet = count_and_handle


class Viewer:
    """One person the desktop is shared with, as the hub's relay connects them."""

    def __init__(self, url: str, name: str, share: str):
        self.url, self.name, self.share = url, name, share
        self.ws = None
        self.pc = None
        self.receiver = None
        self.reader: asyncio.Future | None = None
        self.closed = False
        self.errors: list[str] = []

    @property
    def packets(self) -> Received:
        return PACKETS.get(self.receiver, Received())

    @property
    def pictures(self) -> Received:
        return PICTURES.get(self.receiver.track._queue if self.receiver else None, Received())

    async def start(self, timeout: float) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
        from tornado.websocket import websocket_connect

        self.ws = await asyncio.wait_for(websocket_connect(self.url), timeout)
        if self.share:  # /share/ws: the relay names the person first (the owner's /ws does not)
            await self.ws.write_message(json.dumps({"type": "viewer", "name": self.name, "role": "viewer",
                                                    "share": self.share}))
        ice = await asyncio.wait_for(self._next("ice"), timeout)
        if ice.get("iceTransportPolicy", "all") != "all":
            raise RuntimeError(f"{self.name}: the desktop asks for ICE policy {ice['iceTransportPolicy']}")
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # [], not None: no STUN server
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        codecs = RTCRtpReceiver.getCapabilities("video").codecs
        transceiver.setCodecPreferences(sorted(codecs, key=lambda c: c.mimeType.lower() != "video/h264"))
        self.receiver = transceiver.receiver
        self.pc.createDataChannel("input")
        await self.pc.setLocalDescription(await self.pc.createOffer())  # returns once ICE gathering is complete
        await self.ws.write_message(json.dumps({"type": "offer", "sdp": self.pc.localDescription.sdp}))
        answer = await asyncio.wait_for(self._next("answer"), timeout)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        self.reader = asyncio.ensure_future(self._read())
        deadline = time.monotonic() + timeout
        while not self.pictures.frames:
            if time.monotonic() > deadline or self.closed:
                raise RuntimeError(f"{self.name}: no picture within {timeout:.0f} s "
                                   f"(connection {self.pc.connectionState}, {self.packets.packets} packets; "
                                   f"{self.errors})")
            await asyncio.sleep(0.05)

    async def _next(self, kind: str) -> dict:
        """The next signalling message of type ``kind`` (``participants``, ``notice``, ... are passed)."""
        while True:
            message = await self.ws.read_message()
            if message is None:
                raise RuntimeError(f"{self.name}: the desktop closed the websocket ({self.ws.close_reason})")
            data = json.loads(message)
            if data.get("type") == kind:
                return data
            if data.get("type") in ("error", "ended", "waiting"):
                self.errors.append(data.get("message"))
                raise RuntimeError(f"{self.name}: the desktop says {data.get('message')!r} ({data['type']})")

    async def _read(self) -> None:
        while (message := await self.ws.read_message()) is not None:
            data = json.loads(message)
            if data.get("type") in ("error", "ended"):
                self.errors.append(data.get("message"))
        self.closed = True

    async def stop(self) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.pc is not None:
            await self.pc.close()

    def counts(self) -> dict:
        return {"name": self.name, "packets": self.packets.packets, "bytes": self.packets.bytes,
                "frames": self.pictures.frames, "closed": self.closed, "errors": self.errors[-3:]}


async def viewers_process(url: str, share: str, timeout: float) -> None:
    """Read commands on stdin, answer each with one JSON line on stdout: ``N`` (that many
    viewers, each with a first picture), ``counts``; end of input: leave."""
    from desktop_proxy.peers import pin_host_candidates

    stop_decoding()
    pin_host_candidates(["127.0.0.1"])
    loop = asyncio.get_running_loop()
    viewers: list[Viewer] = []
    made = 0

    def reply(message: dict) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    try:
        while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            if line == "counts":
                reply({"at": time.monotonic(), "viewers": [viewer.counts() for viewer in viewers]})
                continue
            wanted = int(line)
            try:
                while len(viewers) > wanted:
                    await viewers.pop().stop()
                while len(viewers) < wanted:
                    made += 1
                    viewer = Viewer(url, f"viewer-{made}", share)
                    viewers.append(viewer)
                    await viewer.start(timeout)
            except Exception as e:
                reply({"error": f"{type(e).__name__}: {e}"})
                continue
            reply({"viewers": len(viewers)})
    finally:
        await asyncio.gather(*(viewer.stop() for viewer in viewers), return_exceptions=True)


# --------------------------------------------------------------------------------------------
# The driver.


class Viewers:
    """The viewers' process, seen from the driver: a command, its answer (within a timeout)."""

    def __init__(self, bench: Bench, url: str, share: str, timeout: float):
        log = open(bench.work / "viewers.log", "ab")
        argv = [sys.executable, str(Path(__file__).resolve()), "--viewers-process", "--url", url,
                "--share", share, "--timeout", str(timeout), "--viewers-nice", str(bench.args.viewers_nice)]
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                        cwd=ROOT, start_new_session=True)
        log.close()
        bench.stack.callback(bench.stop, self.process)
        bench.stack.callback(self.leave)  # first: a clean goodbye, then the process group goes
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)  # it ended

    def ask(self, command: str, timeout: float) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"the viewers did not answer {command!r} within {timeout:.0f} s") from None
        if line is None:
            raise RuntimeError(f"the viewers' process ended (status {self.process.wait(timeout=10)})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the viewers: {answer['error']}")
        return answer

    def leave(self) -> None:
        try:
            self.process.stdin.close()
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass


def busy_seconds() -> float:
    """The whole machine's busy CPU seconds since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLOCK_TICKS


def main_thread_seconds(pid: int) -> float:
    """CPU seconds of a process's main thread (the desktop server's event loop)."""
    try:
        fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0.0


def browser_pids() -> list[int]:
    return [pid for pid in descendants(os.getpid()) if process_name(pid) in ("chromium", "chrome")]


class ShareBench(Bench):
    """``desktop_stream.Bench``'s X server, scene and process handling, with an owner that
    stays connected while viewers come."""

    def __init__(self, args: argparse.Namespace, stack: ExitStack):
        # Bench's four ports: here only the desktop server's and the X server's VNC port count.
        desktop, vnc = args.ports
        super().__init__(argparse.Namespace(**{**vars(args), "ports": [desktop, 0, vnc, 0]}), stack)

    def desktop_server(self, display: str):
        env = {**os.environ, "HEPSDESK_DESKTOP_ICE_ADDRESSES": "127.0.0.1",
               CONTROL_SOCKET: str(self.work / "control.sock")}  # not the user's own desktop's socket
        process = self.start([sys.executable, "-m", "desktop_proxy", "--display", display, "--port",
                              str(self.desktop_port), "--fps", str(self.args.fps)], "desktop", cwd=ROOT, env=env)
        wait_for_port(self.desktop_port, process, "the desktop server")
        return process

    def server_stats(self) -> dict:
        """The desktop server's ``/stats``: the stream's counters, each viewer's link and tier."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.desktop_port}/stats", timeout=10) as response:
            return json.load(response)

    def window(self, page, viewers: Viewers, pids: dict[str, list[int]], width: int) -> dict:
        """Measure ``--seconds``: CPU per process, the owner's frames, what the viewers got."""
        page.evaluate(MEASURE_JS, [STAMP_BITS, STAMP_BLOCK, STAMP_LEFT, width])
        inbound_before, sent_before = self.inbound(page, "hepsdesk"), self.server_stats().get("stream") or {}
        counts_before = viewers.ask("counts", 30)
        server = pids["server"][0]
        ours = [os.getpid(), *descendants(os.getpid())]  # all this benchmark runs, to tell others' load
        cpu_before = {name: cpu_seconds(p) for name, p in {**pids, "ours": ours}.items()}
        loop_before, busy_before, started = main_thread_seconds(server), busy_seconds(), time.monotonic()
        page.wait_for_timeout(self.args.seconds * 1000)
        elapsed = time.monotonic() - started
        cpu = {name: (cpu_seconds(p) - cpu_before[name]) / elapsed for name, p in {**pids, "ours": ours}.items()}
        loop = (main_thread_seconds(server) - loop_before) / elapsed
        busy = (busy_seconds() - busy_before) / elapsed
        counts_after = viewers.ask("counts", 30)
        inbound_after, stats = self.inbound(page, "hepsdesk"), self.server_stats()
        sent_after = stats.get("stream") or {}
        measured = page.evaluate("window.__measure.running = false, "
                                 "({samples: window.__measure.samples, shown: window.__measure.shown})")
        viewed = counts_after["at"] - counts_before["at"]
        before = {v["name"]: v for v in counts_before["viewers"]}
        got = [{key: v[key] - before.get(v["name"], {}).get(key, 0) for key in ("packets", "bytes", "frames")}
               for v in counts_after["viewers"]]
        closed = [v["name"] for v in counts_after["viewers"] if v["closed"]]
        if closed:
            raise RuntimeError(f"the desktop closed the websocket of {', '.join(closed)}")

        def owner_bytes(inbound: dict) -> int:
            return inbound.get("bytesReceived", 0) + inbound.get("headerBytesReceived", 0)

        def sent(key: str) -> float:
            return round((sent_after.get(key, 0) - sent_before.get(key, 0)) / elapsed, 1)

        return {
            "viewers": len(counts_after["viewers"]),
            "server_cores": round(cpu["server"], 3),
            "server_loop_cores": round(loop, 3),
            "server_capture_encode_cores": round(cpu["server"] - loop, 3),
            "owner_fps": round(measured["shown"] / elapsed, 1),
            "viewer_fps": [round(v["frames"] / viewed, 1) for v in got],
            "viewer_mbps": [round(v["bytes"] * 8 / viewed / 1e6, 2) for v in got],
            "viewer_packets_per_s": [round(v["packets"] / viewed) for v in got],
            "owner_latency_p50_ms": percentile([age for _, age in measured["samples"]], 0.5),
            "owner_mbps": round((owner_bytes(inbound_after) - owner_bytes(inbound_before)) * 8 / elapsed / 1e6, 2),
            "owner_browser": self.browser_figures(inbound_before, inbound_after, elapsed),
            # Which picture each guest gets: the owner's (main) or, on a slow link, the low tier's.
            "viewer_tiers": [link.get("tier") for link in stats.get("links", []) if link.get("owner") is False],
            "sender": {"encoded_fps": sent("encoded"), "grabs_fps": sent("grabs"),
                       **({"low_encoded_fps": sent("low_encoded")} if "low_encoded" in sent_after else {}),
                       **{key: sent_after[key] for key in ("target_bps", "sending_bps", "encode_ms", "low_size",
                                                           "low_target_bps") if key in sent_after}},
            **{f"{name}_cores": round(value, 3) for name, value in cpu.items() if name not in ("server", "ours")},
            "machine_busy_cores": round(busy, 2),
            "others_cores": round(max(0.0, busy - cpu["ours"]), 2),
            "seconds": round(elapsed, 1),
        }

    def run(self) -> dict:
        width, height = (int(v) for v in RESOLUTION.split("x"))
        bar = Bar("desktop share", len(self.args.viewers))
        xserver, display = self.x_server(RESOLUTION)
        scene = self.scene(display, SCENE)
        server = self.desktop_server(display)
        rows = []
        with sync_playwright() as playwright, ExitStack() as browser_open:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            browser_open.callback(browser.close)
            context = browser.new_context(viewport={"width": width, "height": height})
            browser_open.callback(context.close)
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{self.desktop_port}/")
            page.wait_for_function("window.hepsdesk.firstFrameAt !== null", timeout=60000)
            viewers = Viewers(self, f"ws://127.0.0.1:{self.desktop_port}{self.args.path}",
                              "" if self.args.path == "/ws" else SHARE, self.args.connect_timeout)
            pids = {"server": [server.pid], "xserver": [xserver.pid], "scene": [scene.pid],
                    "viewers_process": [viewers.process.pid], "browser": browser_pids()}
            for done, count in enumerate(self.args.viewers):
                bar.update(done, f"{count} viewer(s): connecting")
                viewers.ask(str(count), self.args.connect_timeout * (count + 1) + 10)
                bar.update(done, f"{count} viewer(s): settling")
                page.wait_for_timeout(self.args.settle * 1000)
                bar.update(done, f"{count} viewer(s): measuring")
                rows.append(self.window(page, viewers, pids, width))
                bar.update(done + 1, f"{count} viewer(s): server {rows[-1]['server_cores']} cores, "
                           f"owner {rows[-1]['owner_fps']} fps")
            bar.done()
            viewers.ask("0", 30)
        return summary(rows, self.args)


def fitted_slope(rows: list[dict], key: str) -> float | None:
    """Cores per added viewer as the least-squares slope over all rows: each row's noise
    (capture and encode vary by more than a viewer costs) weighs less than in one difference."""
    points = [(row["viewers"], row[key]) for row in rows]
    if len({n for n, _ in points}) < 2:
        return None
    mean_n = sum(n for n, _ in points) / len(points)
    mean_c = sum(c for _, c in points) / len(points)
    return round(sum((n - mean_n) * (c - mean_c) for n, c in points) / sum((n - mean_n) ** 2 for n, _ in points), 4)


def summary(rows: list[dict], args: argparse.Namespace) -> dict:
    alone = next((row for row in rows if row["viewers"] == 0), None)
    by_n, loop_by_n, ratios = {}, {}, []
    if alone is not None:
        def per_viewer(key: str) -> dict:
            return {str(row["viewers"]): round((row[key] - alone[key]) / row["viewers"], 4)
                    for row in rows if row["viewers"]}
        by_n, loop_by_n = per_viewer("server_cores"), per_viewer("server_loop_cores")
        ratios = [row["owner_fps"] / alone["owner_fps"] for row in rows if alone["owner_fps"]]
    return {
        "resolution": RESOLUTION, "scene": SCENE, "rows": rows,
        "per_viewer_cores": max(by_n.values(), default=None), "per_viewer_cores_by_n": by_n,
        "per_viewer_loop_cores": max(loop_by_n.values(), default=None), "per_viewer_loop_cores_by_n": loop_by_n,
        "per_viewer_cores_fit": fitted_slope(rows, "server_cores"),
        "per_viewer_loop_cores_fit": fitted_slope(rows, "server_loop_cores"),
        "owner_fps_alone": alone and alone["owner_fps"],
        "owner_fps_ratio_min": round(min(ratios), 3) if ratios else None,
        "others_cores_max": max((row["others_cores"] for row in rows), default=None),
        "machine": machine(),
        "settings": {"seconds": args.seconds, "settle": args.settle, "scene_fps": args.scene_fps, "fps": args.fps,
                     "path": args.path, "viewers_nice": args.viewers_nice},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8, help="measured seconds per number of viewers (default 8)")
    parser.add_argument("--settle", type=float, default=4,
                        help="seconds after the viewers connected before measuring (default 4)")
    parser.add_argument("--viewers", type=lambda s: [int(n) for n in s.split(",")], default=[0, 1, 2, 3, 4, 5],
                        help="numbers of viewers, in turn (default 0,1,2,3,4,5; 0 is the owner alone)")
    parser.add_argument("--fps", type=float, default=60, help="the desktop server's frame rate cap (default 60)")
    parser.add_argument("--scene-fps", type=float, default=SCENE_FPS,
                        help=f"how often the scene redraws (default {SCENE_FPS})")
    parser.add_argument("--ports", default="18785,18786",
                        help="desktop server, the X server's VNC port (default 18785,18786); each must be free")
    parser.add_argument("--path", default="/share/ws",
                        help="the viewers' websocket (default /share/ws; /ws: the owner's, without the "
                        "viewer's first message)")
    parser.add_argument("--connect-timeout", type=float, default=30,
                        help="seconds for a viewer to get its first picture (default 30)")
    parser.add_argument("--viewers-nice", type=int, default=10,
                        help="the viewers' process's niceness (default 10: they stand for other people's "
                        "machines, so they take what the desktop and the owner's browser leave; 0: equal)")
    # The viewers' child process (started by the benchmark itself).
    parser.add_argument("--viewers-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--share", default=SHARE, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=30, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.viewers_process:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        os.nice(args.viewers_nice)
        asyncio.run(viewers_process(args.url, args.share, args.timeout))
        return
    args.ports = free_ports(parser, args.ports)
    if len(args.ports) != 2:
        parser.error("--ports: the desktop server's and the VNC port")
    with ExitStack() as stack:
        result = ShareBench(args, stack).run()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
