"""Faults the real OpenStack services cannot produce on demand, injected at the network boundary.

``FaultProxy`` is a pass-through HTTP proxy in front of one service endpoint (nova-api,
neutron): every request goes to the real service unchanged, except those matching a
``Fault``, which get an error instead: either without reaching the service (an outage), or
after the service has done the work (``lost_answer``: the request succeeded but its answer
never arrived, the fault that leaks resources), or only after ``hang`` seconds (a service that
accepts the connection and never answers). A fault lasts ``times`` requests or ``seconds``
from its injection. Clients reach it through a clouds.yaml whose
``<service>_endpoint_override`` points at the proxy (``clouds_yaml_through``).

Usable from async tests (``async with``) and from sync tests (``with``: it runs its own
event loop in a thread).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class Fault:
    method: str  # "GET", "POST", "DELETE", ... or "*"
    path: str  # regular expression searched in the request's path and query
    status: int = 503
    times: int = 1_000_000  # how many matching requests fail; then they pass again
    lost_answer: bool = False  # forward to the service first, then answer with the error
    hang: float = 0.0  # hold the request this long before answering with the error
    seconds: float = 0.0  # >0: requests pass again this long after the fault was injected
    hits: int = field(default=0)
    injected: float = field(default_factory=time.monotonic)

    def matches(self, method: str, path_qs: str) -> bool:
        return (self.hits < self.times and (not self.seconds or time.monotonic() - self.injected < self.seconds)
                and self.method in ("*", method) and re.search(self.path, path_qs) is not None)


class FaultProxy:
    def __init__(self, upstream: str, port: int):
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = f"{parts.scheme}://{parts.netloc}"  # paths pass through unchanged
        self.prefix = parts.path.rstrip("/")
        self.port = port
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The proxy's URL for the service, with the upstream's path (e.g. /v2.1)."""
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def inject(self, fault: Fault) -> Fault:
        fault.injected = time.monotonic()
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    async def handle(self, request):
        from aiohttp import web

        self.requests.append((request.method, request.path_qs))
        fault = next((f for f in self.faults if f.matches(request.method, request.path_qs)), None)
        if fault is not None:
            fault.hits += 1
            if fault.hang:
                await asyncio.sleep(fault.hang)
            if not fault.lost_answer:
                return web.json_response({"message": "injected fault"}, status=fault.status)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        body = await request.read()
        async with self.session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                        data=body or None) as answer:
            body = await answer.read()
            keep = {k: v for k, v in answer.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection")}
            if fault is not None:  # the service did the work; its answer is lost
                return web.json_response({"message": "injected fault (answer lost)"}, status=fault.status)
            return web.Response(status=answer.status, body=body, headers=keep)

    async def __aenter__(self):
        import aiohttp
        from aiohttp import web

        self.session = aiohttp.ClientSession()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()
        await self.session.close()

    # sync use: the proxy's own loop in a thread

    def __enter__(self):
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def serve():
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self.__aenter__())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.__aexit__(None, None, None))
            self._loop.close()

        self._thread = threading.Thread(target=serve, name=f"fault-proxy-{self.port}", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"the fault proxy on port {self.port} did not start")
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def clouds_yaml_through(devcloud, directory: Path, **overrides: str) -> str:
    """A clouds.yaml whose ``devcloud`` cloud reaches e.g. compute="http://127.0.0.1:18774/v2.1"
    through fault proxies (every other cloud and service unchanged)."""
    config = yaml.safe_load(devcloud.settings.clouds_yaml.read_text())
    for service, url in overrides.items():
        config["clouds"]["devcloud"][f"{service}_endpoint_override"] = url
    path = Path(directory) / "clouds.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)
