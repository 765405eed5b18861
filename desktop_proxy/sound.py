"""The desktop's sound, as an audio track (Opus) for every viewer.

The session runs a PulseAudio server of the desktop's own (``session.py``: a private socket,
one null sink, ``hepsdesk``, that every program on the desktop plays to). This side watches it
(``pactl subscribe``): while something plays, ``parec`` records the sink's monitor as 20 ms
frames of 48 kHz stereo, which aiortc encodes as Opus, one recording for every viewer
(``MediaRelay``). When nothing has played for ``GRACE`` seconds the recording stops: a silent
desktop costs nothing and sends no audio. The page plays the track muted until the person
unmutes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import os
import re
import shutil
import time

import av
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger("desktop_proxy")

RATE = 48000
CHANNELS = 2
FRAME_SAMPLES = RATE // 50  # 20 ms
FRAME_BYTES = FRAME_SAMPLES * CHANNELS * 2  # s16
SINK = "hepsdesk"
GRACE = 2.0  # seconds of nothing playing before the recording stops
QUEUED = 25  # frames (half a second) waiting for the encoder; older ones are dropped
PLAYING = re.compile(r"Event '(new|remove)' on sink-input #\d+")


class SoundTrack(MediaStreamTrack):
    """The desktop's recorded sound, frame by frame; waits (sending nothing) while silent."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self.queue: asyncio.Queue[av.AudioFrame] = asyncio.Queue(QUEUED)

    def put(self, frame: av.AudioFrame) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # late: drop the oldest rather than fall behind
        self.queue.put_nowait(frame)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        return await self.queue.get()


class DesktopSound:
    """The PulseAudio server at ``server`` (``unix:/path``), recorded while it plays."""

    def __init__(self, server: str):
        for program in ("pactl", "parec"):
            if not shutil.which(program):
                raise FileNotFoundError(f"{program} is not installed (Debian: pulseaudio-utils)")
        self.server = server
        self.source = SoundTrack()
        self.relay = MediaRelay()
        self.recordings = 0  # how often recording started
        self.frames = 0
        self._epoch = time.monotonic()
        self._pts = 0
        self._watcher: asyncio.Task | None = None
        self._recorder: asyncio.Task | None = None
        self._quiet: asyncio.TimerHandle | None = None

    def track(self) -> MediaStreamTrack:
        """A viewer's audio track (one recording serves them all)."""
        return self.relay.subscribe(self.source)

    async def start(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        for task in (self._watcher, self._recorder):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.source.stop()

    @property
    def recording(self) -> bool:
        return self._recorder is not None and not self._recorder.done()

    def stats(self) -> dict:
        return {"recording": self.recording, "recordings": self.recordings, "frames": self.frames}

    async def _pactl(self, *args: str, stdout=asyncio.subprocess.PIPE) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec("pactl", f"--server={self.server}", *args, stdout=stdout,
                                                    stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL)

    async def _playing(self) -> bool:
        process = await self._pactl("list", "short", "sink-inputs")
        out, _ = await process.communicate()
        return bool(out.strip())

    async def _watch(self) -> None:
        """Follow what plays (programs opening and closing their streams)."""
        socket = self.server.removeprefix("unix:")
        for _ in range(200):  # the session's sound server is starting (at most 10 s)
            if os.path.exists(socket):
                break
            await asyncio.sleep(0.05)
        while True:
            process = await self._pactl("subscribe")
            await self._changed()  # what played before
            try:
                while line := await process.stdout.readline():
                    if PLAYING.search(line.decode(errors="replace")):
                        await self._changed()
            finally:
                if process.returncode is None:
                    process.kill()
                await process.wait()
            log.warning("sound: the desktop's sound server went away; watching again in 5 s")
            await asyncio.sleep(5)

    async def _changed(self) -> None:
        if await self._playing():
            if self._quiet is not None:
                self._quiet.cancel()
                self._quiet = None
            self._record()
        elif self._quiet is None and self.recording:
            self._quiet = asyncio.get_running_loop().call_later(GRACE, self._stop_recording)

    def _record(self) -> None:
        if not self.recording:
            self.recordings += 1
            self._recorder = asyncio.get_running_loop().create_task(self._recording())

    def _stop_recording(self) -> None:
        self._quiet = None
        if self._recorder is not None:
            self._recorder.cancel()

    async def _recording(self) -> None:
        process = await asyncio.create_subprocess_exec(
            "parec", f"--server={self.server}", f"--device={SINK}.monitor", "--raw", "--format=s16le",
            f"--rate={RATE}", f"--channels={CHANNELS}", "--latency-msec=20", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL)
        # Timestamps follow the clock across silences, so the browser plays each sound when it came.
        self._pts = max(self._pts, int((time.monotonic() - self._epoch) * RATE))
        log.info("sound: recording")
        try:
            while True:
                data = await process.stdout.readexactly(FRAME_BYTES)
                frame = av.AudioFrame(format="s16", layout="stereo", samples=FRAME_SAMPLES)
                frame.planes[0].update(data)
                frame.sample_rate = RATE
                frame.time_base = fractions.Fraction(1, RATE)
                frame.pts = self._pts
                self._pts += FRAME_SAMPLES
                self.frames += 1
                self.source.put(frame)
        except asyncio.IncompleteReadError:
            log.warning("sound: the recording ended")
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
            log.info("sound: silent, recording stopped")
