"""The desktop server: the page, the signalling websocket, and the desktop behind them.

Run by jupyter-server-proxy (see ``setup_desktop``) on a unix socket, so only the Jupyter
server can reach it and JupyterHub's authentication guards every request: the page at
``/``, its static files, and the signalling websocket at ``/ws``. Media flows directly
between browser and VM over WebRTC.

    python -m desktop_proxy --unix-socket PATH | --port N [--size 1920x1080]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from pathlib import Path

from tornado import httpserver, netutil, web, websocket

from .peers import DesktopSessions
from .xdisplay import XDisplay

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("desktop_proxy")


class PageHandler(web.RequestHandler):
    def initialize(self, failure: str = ""):
        self.failure = failure

    def get(self):
        self.set_header("Cache-Control", "no-store")
        if self.failure:
            self.set_status(503)
            self.render(str(STATIC / "failed.html"), failure=self.failure)
        else:
            self.render(str(STATIC / "index.html"))


class SignallingHandler(websocket.WebSocketHandler):
    """One browser tab: it sends an offer, gets an answer; closing the socket ends the session."""

    def initialize(self, sessions: DesktopSessions):
        self.sessions = sessions
        self.pc = None

    def check_origin(self, origin):
        # Reachable only through jupyter-server-proxy, which has already checked the origin
        # and the user's credentials; the Host it forwards is not the browser's.
        return True

    async def on_message(self, message):
        try:
            data = json.loads(message)
        except ValueError:
            return self.write_message(json.dumps({"type": "error", "message": "not JSON"}))
        if data.get("type") != "offer" or not isinstance(data.get("sdp"), str):
            return self.write_message(json.dumps({"type": "error", "message": "expected an offer"}))
        if self.pc is not None:
            await self.sessions.close(self.pc)
        try:
            self.pc, sdp = await self.sessions.answer(data["sdp"])
        except Exception as e:
            log.exception("cannot answer the offer")
            return self.write_message(json.dumps({"type": "error", "message": f"cannot start the stream: {e}"}))
        self.write_message(json.dumps({"type": "answer", "sdp": sdp}))

    def on_close(self):
        if self.pc is not None:
            asyncio.ensure_future(self.sessions.close(self.pc))


def make_app(sessions: DesktopSessions | None, failure: str = "") -> web.Application:
    """The desktop's web app; with ``failure`` (the desktop could not start), a page saying so."""
    routes = [
        (r"/", PageHandler, {"failure": failure}),
        (r"/static/(.*)", web.StaticFileHandler, {"path": str(STATIC)}),
    ]
    if sessions is not None:
        routes.append((r"/ws", SignallingHandler, {"sessions": sessions}))
    return web.Application(routes, template_path=str(STATIC))


async def serve(args: argparse.Namespace) -> None:
    width, height = (int(v) for v in args.size.lower().split("x"))
    display = XDisplay(width, height)
    ice = [a for a in (args.ice_address or os.environ.get("HEPSDESK_DESKTOP_ICE_ADDRESSES")
                       or os.environ.get("HEPSDESK_VM_ADDRESS", "")).split(",") if a]
    sessions = None
    failure = ""
    try:
        await display.start()
        sessions = DesktopSessions(display, ice)
    except Exception as e:
        # Keep serving, so the user gets a page that says what happened instead of a proxy error.
        log.exception("the desktop could not start")
        failure = str(e) or type(e).__name__
    server = httpserver.HTTPServer(make_app(sessions, failure))
    if args.unix_socket:
        server.add_socket(netutil.bind_unix_socket(args.unix_socket, mode=0o600))
        log.info("desktop on unix socket %s, display %s", args.unix_socket, display.name or "(none)")
    else:
        server.listen(args.port, "127.0.0.1")
        log.info("desktop on http://127.0.0.1:%d/, display %s", args.port, display.name or "(none)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        server.stop()
        if sessions is not None:
            await sessions.shutdown()
        display.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="hepsdesk WebRTC desktop")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix-socket")
    where.add_argument("--port", type=int)
    parser.add_argument("--size", default=os.environ.get("HEPSDESK_DESKTOP_SIZE", "1920x1080"),
                        help="initial size of the desktop (default 1920x1080)")
    parser.add_argument("--ice-address", default="",
                        help="comma-separated addresses to offer as ICE host candidates "
                        "(default: $HEPSDESK_DESKTOP_ICE_ADDRESSES, else $HEPSDESK_VM_ADDRESS, else all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[desktop %(levelname)s %(asctime)s] %(message)s")
    asyncio.run(serve(args))
