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
if os.environ.get("HEPSDESK_LOOP_DEBUG"):
    import logging

    _loop = asyncio.get_running_loop()
    _loop.set_debug(True)
    _loop.slow_callback_duration = 0.05
    logging.getLogger("asyncio").addHandler(logging.StreamHandler())

    # ... and every garbage collection that took more than 20 ms ("gc: generation 2, 312 ms").
    import gc

    _gc_started = [0.0]

    def _gc_timer(phase: str, info: dict) -> None:
        if phase == "start":
            _gc_started[0] = time.perf_counter()
        elif (took := (time.perf_counter() - _gc_started[0]) * 1000) > 20:
            logging.getLogger("asyncio").warning("gc: generation %d, %.0f ms, %d collected", info["generation"],
                                                 took, info["collected"])

    gc.callbacks.append(_gc_timer)
