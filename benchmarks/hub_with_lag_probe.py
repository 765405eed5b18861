# JupyterHub configuration for benchmarks: the repository's jupyterhub_config.py, unchanged,
# plus a probe on the hub's own event loop. Every 10 ms it sleeps 10 ms and writes how late
# it woke up ("<unix time> <lag ms>") to $HEPSDESK_LAG_FILE: anything that blocks the loop
# (a synchronous API call, a slow handler) shows up as lag.
import asyncio
import os
import time
from pathlib import Path

_repo_config = Path(os.environ["HEPSDESK_REPO_CONFIG"])
exec(compile(_repo_config.read_text(), str(_repo_config), "exec"),  # noqa: S102
     {"get_config": get_config, "load_subconfig": load_subconfig, "__file__": str(_repo_config)})  # noqa: F821


async def _lag_probe(path: str, period: float = 0.01) -> None:
    with open(path, "a", buffering=1 << 16) as out:
        while True:
            for _ in range(100):
                started = time.perf_counter()
                await asyncio.sleep(period)
                out.write(f"{time.time():.3f} {(time.perf_counter() - started - period) * 1000:.2f}\n")
            out.flush()


def _start_probe() -> None:
    asyncio.ensure_future(_lag_probe(os.environ["HEPSDESK_LAG_FILE"]))


# The configuration is read inside the hub's running loop (JupyterHub.initialize).
asyncio.get_running_loop().call_soon(_start_probe)

# HEPSDESK_LOOP_DEBUG=1: asyncio's debug mode names every callback that held the loop for more
# than 50 ms in the hub's log ("Executing <Task ...> took 0.123 seconds"), to find what lags.
if os.environ.get("HEPSDESK_LOOP_DEBUG") == "1":
    import logging

    _loop = asyncio.get_running_loop()
    _loop.set_debug(True)
    _loop.slow_callback_duration = 0.05
    logging.getLogger("asyncio").addHandler(logging.StreamHandler())


# HEPSDESK_LOOP_DEBUG=stacks: every turn of the loop that takes more than 100 ms (one slow
# callback, or many ready at once) is logged with its longest callbacks and the stacks a
# watchdog thread sampled meanwhile ("slow turn 640 ms, 87 callbacks: 120 ms <Task ...> ...").
if os.environ.get("HEPSDESK_LOOP_DEBUG") == "stacks":
    import collections
    import logging
    import sys
    import threading
    import traceback

    _turn: list = [0.0, []]  # when the current turn began; (ms, callback) of its callbacks
    _samples: list = []
    _loop_thread = threading.get_ident()
    _original_run, _original_turn = asyncio.events.Handle._run, asyncio.base_events.BaseEventLoop._run_once

    def _timed_run(self):
        started = time.perf_counter()
        try:
            return _original_run(self)
        finally:
            _turn[1].append(((time.perf_counter() - started) * 1000, self))

    def _timed_turn(self):
        _turn[0], _turn[1] = time.perf_counter(), []
        try:
            return _original_turn(self)
        finally:
            took, _turn[0] = (time.perf_counter() - _turn[0]) * 1000, 0.0
            if took > 100:
                longest = sorted(_turn[1], key=lambda c: -c[0])[:4]
                stacks = collections.Counter(_samples).most_common(3)
                logging.getLogger("asyncio").warning(
                    "slow turn %.0f ms at %.3f, %d callbacks: %s; stacks: %s", took, time.time(), len(_turn[1]),
                    " | ".join(f"{ms:.0f} ms {cb!r:.160}" for ms, cb in longest),
                    " || ".join(f"{n}x {stack}" for stack, n in stacks))
            _samples.clear()

    def _watch() -> None:
        while True:
            time.sleep(0.02)
            if _turn[0] and time.perf_counter() - _turn[0] > 0.1:
                frame = sys._current_frames().get(_loop_thread)
                if frame is not None:
                    stack = traceback.extract_stack(frame)[-10:]
                    _samples.append(" <- ".join(f"{f.filename.split('site-packages/')[-1]}:{f.lineno} {f.name}"
                                                for f in reversed(stack)))

    # The spawner's OpenStack calls that keep a worker thread busy (holding the interpreter
    # lock the loop needs) for more than 50 ms of CPU.
    from hepsdesk_spawner import cloud as _cloud

    _original_call = _cloud.OpenStackClient._run

    def _timed_call(self, fn):
        cpu, wall = time.thread_time(), time.time()
        try:
            return _original_call(self, fn)
        finally:
            if (used := (time.thread_time() - cpu) * 1000) > 50:
                logging.getLogger("asyncio").warning("busy worker %.0f ms CPU at %.3f-%.3f: %.150r", used, wall,
                                                     time.time(), fn)

    _cloud.OpenStackClient._run = _timed_call
    logging.getLogger("asyncio").addHandler(logging.StreamHandler())
    asyncio.events.Handle._run = _timed_run
    asyncio.base_events.BaseEventLoop._run_once = _timed_turn
    threading.Thread(target=_watch, name="loop-watchdog", daemon=True).start()

# HEPSDESK_LOOP_DEBUG (any value): every garbage collection of more than 20 ms is logged too
# ("gc: generation 2, 312 ms").
if os.environ.get("HEPSDESK_LOOP_DEBUG"):
    import gc
    import logging

    _gc_started = [0.0]

    def _gc_timer(phase: str, info: dict) -> None:
        if phase == "start":
            _gc_started[0] = time.perf_counter()
        elif (took := (time.perf_counter() - _gc_started[0]) * 1000) > 20:
            logging.getLogger("asyncio").warning("gc: generation %d, %.0f ms, %d collected", info["generation"],
                                                 took, info["collected"])

    gc.callbacks.append(_gc_timer)
