"""The desktop server: the page, the signalling websocket, and the desktop behind them.

Run by jupyter-server-proxy (see ``setup_desktop``) on a unix socket, so only the Jupyter
server can reach it and JupyterHub's authentication guards every request: the page at
``/``, its static files, the signalling websocket at ``/ws``, ``/stats``, and the control API
at ``/api/`` (``control.py``). Media flows directly between browser and VM over WebRTC. The
control API is also served alone on the user's private control socket, for notebooks.

    python -m desktop_proxy --unix-socket PATH | --port N [--size 1920x1080] [--fps 60]
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import signal
import socket
from pathlib import Path
from urllib.parse import quote

from tornado import httpserver, httputil, netutil, web, websocket

from .activity import ActivityReporter
from .apps import USER_NICE
from .clipboard import ClipboardError, ClipboardHandler, DesktopClipboard
from .control import MAX_REQUEST, ControlSocket, DesktopControl, control_routes
from .control_socket import control_socket_path
from .cpu import stage_seconds
from .encoding import ENCODERS
from .files import FileTransfers, file_routes
from .hub_report import HubReporter
from .ice_servers import POLICIES, HubIceServers, IceServers
from .messages import SHARE_HELLO, SHARE_SIGNALLING, SIGNALLING, DropCounter, MessageSchema, Rejected
from .pages import Pages
from .peers import ENGINES, DesktopSessions
from .presets import PRESETS
from .session import take_priority
from .sharing import ROLES, Participant, SharingError
from .sound import DesktopSound
from .xdisplay import DisplayError, XDisplay

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
            self.render(str(STATIC / "index.html"), **page_settings())


def page_settings(role: str = "owner", owner: str = "", static: str = "static/") -> dict:
    """What the desktop's page is rendered with: the owner's page (here), or a guest's (the hub's
    relay renders it, ``hepsdesk_share``). The owner's page links to the hub's page where they
    share the desktop (under a hub)."""
    owner = owner or owner_name()
    share_url = ""
    if role == "owner" and os.environ.get("JUPYTERHUB_API_URL") and os.environ.get("JUPYTERHUB_USER"):
        base = os.environ.get("JUPYTERHUB_BASE_URL", "/")
        server = os.environ.get("JUPYTERHUB_SERVER_NAME", "")
        share_url = f"{base.rstrip('/')}/hub/hepsdesk/shares/{quote(owner, safe='')}/" + \
            (f"{quote(server, safe='')}/" if server else "")
    title = "Desktop" if role == "owner" else f"{owner}'s desktop"
    return {"role": role, "owner": owner, "static": static, "share_url": share_url, "title": title}


class SignallingHandler(websocket.WebSocketHandler):
    """One of the owner's tabs: it sends an offer, gets an answer; closing the socket ends the
    session. The owner also decides here who of the people the desktop is shared with may type."""

    schema: MessageSchema = SIGNALLING

    def initialize(self, sessions: DesktopSessions, pages: Pages | None = None, transfers: FileTransfers | None = None):
        self.sessions = sessions
        self.pages = pages
        self.transfers = transfers
        self.pc = None
        self.participant: Participant | None = None
        self.ice_servers: list[dict] = []
        self.drops = DropCounter("signalling", log)

    async def open(self):
        self.participant = Participant(owner_name(), "owner", self._send)
        self.sessions.sharing.join(self.participant)
        await self._start()
        self.pages.add(self._send)  # what programs on the desktop copy, files sent to the browser
        for offer in self.transfers.pending_offers() if self.transfers else []:
            self._send(offer)

    async def _start(self) -> None:
        # The STUN/TURN servers first (TURN credentials minted for this session, by the hub in
        # a VM): the browser makes its offer with them.
        self.ice_servers, policy = await self.sessions.ice.session()
        self._send({"type": "ice", "iceServers": self.ice_servers, "iceTransportPolicy": policy})

    def check_origin(self, origin):
        # Reachable only through jupyter-server-proxy, which has already checked the origin
        # and the user's credentials; the Host it forwards is not the browser's.
        return True

    async def on_message(self, message):
        try:
            data = self.schema.parse(message)
        except Rejected as e:
            self.drops.drop(e.reason)
            return self._send({"type": "error", "message": f"message refused: {e.reason}"})
        await self.handle(data)

    async def handle(self, data: dict) -> None:
        kind = data["type"]
        if kind == "offer":
            return await self._answer(data["sdp"])
        if kind == "resize":
            return await self._resize(data["width"], data["height"], data["scale"])
        if kind == "preset":
            return self._preset(data["name"])
        if kind == "layout":
            return await self._layout(data["name"])
        sharing = self.sessions.sharing
        try:
            if kind == "give-control":
                sharing.give(data["id"])
            elif kind == "take-control":
                sharing.take_back()
            elif kind == "admit":
                sharing.admit(data["id"], data["accept"])
            elif kind == "remove":
                sharing.remove(data["id"])
            elif kind == "end-sharing":
                sharing.end()
        except SharingError as e:
            self._send({"type": "notice", "text": str(e)})

    async def _answer(self, sdp: str) -> None:
        if self.pc is not None:
            await self.sessions.close(self.pc)
        try:
            self.pc, sdp = await self.sessions.answer(sdp, self.ice_servers, self.participant)
        except Exception as e:
            log.exception("cannot answer the offer")
            return self._send({"type": "error", "message": f"cannot start the stream: {e}"})
        self._send({"type": "answer", "sdp": sdp})

    async def _resize(self, width: float, height: float, scale: float) -> None:
        try:
            width, height = await self.sessions.resize(width, height, scale)
        except DisplayError as e:
            log.warning("resize to %.0fx%.0f refused: %s", width, height, e)
            return self._send({"type": "resize-failed", "message": str(e),
                               "width": self.sessions.display.width, "height": self.sessions.display.height})
        self._send({"type": "resized", "width": width, "height": height})

    async def _layout(self, name: str) -> None:
        try:
            layout = await self.sessions.set_layout(name)
        except (ValueError, DisplayError) as e:
            log.warning("keyboard layout %r refused: %s", name, e)
            return self._send({"type": "layout-failed", "message": str(e)})
        self._send({"type": "layout", "name": layout})

    def _preset(self, name) -> None:
        try:
            preset = self.sessions.set_preset(name)
        except (KeyError, TypeError):
            return self._send({"type": "error", "message": f"unknown quality preset {name!r}; "
                               f"choose one of {', '.join(PRESETS)}"})
        self._send({"type": "preset", **preset.as_dict()})

    def _send(self, message: dict) -> None:
        try:
            self.write_message(json.dumps(message))
        except websocket.WebSocketClosedError:
            pass

    def on_close(self):
        if self.pages is not None:
            self.pages.discard(self._send)
        if self.participant is not None:
            self.sessions.sharing.leave(self.participant)
        if self.pc is not None:
            asyncio.ensure_future(self.sessions.close(self.pc))


class ShareSignallingHandler(SignallingHandler):
    """A guest's page, through the hub's relay (``hepsdesk_share``), which has signed the guest
    in, checked the owner's share and opened this socket with the owner's credentials. Its first
    message names the guest; after that the page may only offer and ask for control. Nothing of
    the owner's (clipboard, files, sound, the control API) reaches it."""

    schema = SHARE_SIGNALLING
    HELLO_TIMEOUT = 10.0

    async def open(self):
        self._hello_timer = asyncio.get_running_loop().call_later(
            self.HELLO_TIMEOUT, self._disconnect, "The relay did not say who is joining.")

    async def on_message(self, message):
        if self.participant is None:
            try:
                hello = SHARE_HELLO.parse(message)
                if hello["role"] not in ROLES or hello["role"] == "owner":
                    raise Rejected("unknown role")
            except Rejected as e:
                self.drops.drop(e.reason)
                return self._disconnect(f"The relay's first message was refused: {e.reason}.")
            self._hello_timer.cancel()
            self.participant = Participant(hello["name"], hello["role"], self._send, self._disconnect,
                                           share=hello["share"])
            self.participant.admitted = self._start
            try:
                self.sessions.sharing.join(self.participant)
            except SharingError as e:
                self.participant = None
                return self._disconnect(str(e))
            if self.participant.waiting:
                self._send({"type": "waiting", "message": "Waiting for the owner to let you in\u2026"})
            else:
                await self._start()
            return
        await super().on_message(message)

    async def handle(self, data: dict) -> None:
        if data["type"] == "ask-control":
            return self.sessions.sharing.ask_control(self.participant)
        if self.participant.waiting:
            return self._send({"type": "error", "message": "the owner has not let you in yet"})
        await self._answer(data["sdp"])

    def _disconnect(self, reason: str) -> None:
        """Close for good: the page shows ``reason`` and does not reconnect (code 4403)."""
        self._send({"type": "ended", "message": reason})
        self.close(4403, reason.encode()[:120].decode(errors="ignore"))

    def on_close(self):
        timer = getattr(self, "_hello_timer", None)
        if timer is not None:
            timer.cancel()
        super().on_close()


def owner_name() -> str:
    """The desktop's owner, as the hub names them."""
    return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()


class StatsHandler(web.RequestHandler):
    """What the desktop side measures (the stream's counters and settings, each viewer's link,
    the CPU seconds of each stage: ``cpu.py``), as JSON: for the curious user, for tests and
    benchmarks."""

    def initialize(self, sessions: DesktopSessions, clipboard: DesktopClipboard | None = None,
                   transfers: FileTransfers | None = None):
        self.sessions = sessions
        self.clipboard = clipboard
        self.transfers = transfers

    def get(self):
        self.set_header("Cache-Control", "no-store")
        self.write({**self.sessions.stats(), "clipboard": self.clipboard and self.clipboard.stats(),
                    "files": self.transfers and self.transfers.stats(), "cpu_seconds": stage_seconds()})


class Starting(web.RequestHandler):
    """While the desktop starts: each request waits until it has, then is sent again (307) to
    the desktop itself. So jupyter-server-proxy's readiness probe, which backs off exponentially
    (1.3 s, then 2.6 s ...), is answered the moment the desktop is up, not at its next try."""

    HOLD = 55  # seconds; jupyter-server-proxy gives the desktop 60 (``setup_desktop``)

    def initialize(self, started: asyncio.Event) -> None:
        self.started = started

    async def prepare(self) -> None:
        try:
            await asyncio.wait_for(self.started.wait(), self.HOLD)
        except TimeoutError:
            pass
        self.set_status(307)
        self.set_header("Location", self.request.uri)
        self.set_header("Cache-Control", "no-store")
        self.finish()


class Switch(httputil.HTTPServerConnectionDelegate):
    """The HTTP server's application, which can change: ``Starting`` while the desktop starts,
    then the desktop's own. The socket is listened on from the first moment."""

    def __init__(self, app: httputil.HTTPServerConnectionDelegate) -> None:
        self.app = app

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        return self.app.start_request(server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


def make_app(sessions: DesktopSessions | None, failure: str = "", control: DesktopControl | None = None,
             clipboard: DesktopClipboard | None = None, transfers: FileTransfers | None = None,
             pages: Pages | None = None) -> web.Application:
    """The desktop's web app; with ``failure`` (the desktop could not start), a page saying so."""
    routes = [
        (r"/", PageHandler, {"failure": failure}),
        (r"/static/(.*)", web.StaticFileHandler, {"path": str(STATIC)}),
    ]
    pages = Pages() if pages is None else pages
    if sessions is not None:
        routes.append((r"/ws", SignallingHandler, {"sessions": sessions, "pages": pages, "transfers": transfers}))
        routes.append((r"/share/ws", ShareSignallingHandler, {"sessions": sessions}))
        routes.append((r"/stats", StatsHandler, {"sessions": sessions, "clipboard": clipboard,
                                                 "transfers": transfers}))
        routes.append((r"/api/clipboard", ClipboardHandler, {"clipboard": clipboard}))
    if transfers is not None:
        routes += file_routes(transfers)
    routes += control_routes(control, failure)
    return web.Application(routes, template_path=str(STATIC), websocket_max_message_size=SIGNALLING.max_bytes)


async def serve(args: argparse.Namespace, listening: socket.socket | None = None) -> None:
    nice = take_priority()  # capture and encode before the user's programs (session.py)
    log.info("the desktop runs at niceness %d, the user's programs at %d", nice, nice + USER_NICE)
    width, height = (int(v) for v in args.size.lower().split("x"))
    display = XDisplay(width, height, session=args.session)
    ice = [a for a in (args.ice_address or os.environ.get("HEPSDESK_DESKTOP_ICE_ADDRESSES")
                       or os.environ.get("HEPSDESK_VM_ADDRESS", "")).split(",") if a]
    sessions = None
    control = None
    clipboard = None
    pages = Pages()
    transfers = FileTransfers.from_environment(pages, args.file_limit << 20)
    failure = ""
    started = asyncio.Event()
    switch = Switch(web.Application([(r".*", Starting, {"started": started})]))
    server = httpserver.HTTPServer(switch, max_body_size=MAX_REQUEST)
    if listening is not None:  # bound before the imports (__main__.py)
        server.add_socket(listening)
    elif args.unix_socket:
        server.add_socket(netutil.bind_unix_socket(args.unix_socket, mode=0o600))
    else:
        server.listen(args.port, "127.0.0.1")
    try:
        if args.display:
            display.attach(args.display)
        else:
            await display.start()
        hub = {name: os.environ.get(f"JUPYTERHUB_{name}", "") for name in ("API_URL", "API_TOKEN", "USER")}
        activity = None
        if all(hub.values()):
            # Under a hub (in a VM): a person's input is the server's activity.
            activity = ActivityReporter(hub["API_URL"], hub["API_TOKEN"], hub["USER"],
                                        os.environ.get("JUPYTERHUB_SERVER_NAME", ""),
                                        interval=float(os.environ.get("HEPSDESK_DESKTOP_ACTIVITY_INTERVAL") or 60))
        if not args.ice_servers and hub["API_URL"] and hub["API_TOKEN"]:
            # Under a hub (in a VM): the hub gives each session its servers (hepsdesk_spawner/turn.py).
            servers = HubIceServers(hub["API_URL"], hub["API_TOKEN"])
        else:
            servers = IceServers.from_settings(args.ice_servers, args.turn_secret_file,
                                               os.environ.get("JUPYTERHUB_USER", ""), args.ice_policy)
        sound = None
        if display.session.env.get("PULSE_SERVER"):
            try:
                sound = DesktopSound(display.session.env["PULSE_SERVER"])
                await sound.start()
            except FileNotFoundError as e:
                log.warning("no sound: %s", e)
                sound = None
        transfers.activity = activity
        sessions = DesktopSessions(display, ice, fps=args.fps, keepalive=args.keepalive, engine=args.engine,
                                   encoder=args.encoder, playout_delay=args.playout_delay, ice_servers=servers,
                                   activity=activity, sound=sound)
        if all(hub.values()):
            # Under a hub: who watches and how the stream does, for the admins' dashboard and metrics.
            reporter = HubReporter(hub["API_URL"], hub["API_TOKEN"], os.environ.get("JUPYTERHUB_SERVER_NAME", ""),
                                   sessions, interval=float(os.environ.get("HEPSDESK_DESKTOP_REPORT_INTERVAL") or 30))
            sessions.on_change = reporter.nudge
            sessions.reporter = reporter
            reporter.start()
        control = DesktopControl.from_environment(display.name, display.session.env)
        try:
            clipboard = DesktopClipboard(display.name, pages, args.clipboard_limit << 20)
            clipboard.activity = sessions.activity
            await clipboard.start()
        except ClipboardError as e:
            log.warning("no clipboard: %s", e)
            clipboard = None
    except Exception as e:
        # Keep serving, so the user gets a page that says what happened instead of a proxy error.
        log.exception("the desktop could not start")
        failure = str(e) or type(e).__name__
    switch.app = make_app(sessions, failure, control, clipboard, transfers, pages)
    started.set()
    where = f"unix socket {args.unix_socket}" if args.unix_socket else f"http://127.0.0.1:{args.port}/"
    log.info("desktop on %s, display %s", where, display.name or "(none)")
    # The control API alone, for notebooks and hepsdesk-send: on a socket only this user can reach.
    control_socket = ControlSocket(web.Application(file_routes(transfers) + control_routes(control, failure)),
                                   control_socket_path())
    control_socket.start()
    transfers.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        server.stop()
        control_socket.stop()
        await transfers.stop()  # no partial upload is left
        if clipboard is not None:
            clipboard.stop()
        if control is not None:
            await control.shutdown()  # the applications first, while their display is there
        if sessions is not None:
            await sessions.shutdown()
            if sessions.sound is not None:
                await sessions.sound.stop()
        display.stop()


def main(argv: list[str] | None = None, listening: socket.socket | None = None) -> None:
    """Run the desktop server; ``listening``: its socket, already bound to ``--unix-socket``
    or ``--port``."""
    parser = argparse.ArgumentParser(description="hepsdesk WebRTC desktop")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix-socket")
    where.add_argument("--port", type=int)
    parser.add_argument("--size", default=os.environ.get("HEPSDESK_DESKTOP_SIZE", "1920x1080"),
                        help="initial size of the desktop (default 1920x1080)")
    parser.add_argument("--session", choices=("auto", "xfce", "openbox"),
                        default=os.environ.get("HEPSDESK_DESKTOP_SESSION", "auto"),
                        help="the desktop session: XFCE's panel and window manager, or openbox; auto (default): "
                        "XFCE where it is installed")
    parser.add_argument("--display", default="",
                        help="stream this running X display (e.g. :1) instead of starting a desktop")
    parser.add_argument("--fps", type=float, default=float(os.environ.get("HEPSDESK_DESKTOP_FPS", 60)),
                        help="most frames per second sent (default 60)")
    parser.add_argument("--engine", choices=ENGINES, default=os.environ.get("HEPSDESK_DESKTOP_ENGINE", "own"),
                        help="capture and encode with our own pipeline (default) or pixelflux")
    parser.add_argument("--encoder", choices=ENCODERS, default=os.environ.get("HEPSDESK_DESKTOP_ENCODER", "auto"),
                        help="H.264 encoder: auto (NVENC where there is an NVIDIA GPU, else x264), x264, nvenc")
    parser.add_argument("--playout-delay", type=int,
                        default=int(os.environ.get("HEPSDESK_DESKTOP_PLAYOUT_DELAY", 50)),
                        help="ask the browser to show pictures as soon as they are decoded, queueing at "
                        "most this many milliseconds of them (default 50; 0: the browser's own jitter buffer)")
    parser.add_argument("--keepalive", type=float, default=0.0,
                        help="re-send the picture after this many still seconds (default 0: never; "
                        "a still desktop sends no video)")
    parser.add_argument("--clipboard-limit", type=int, default=int(os.environ.get("HEPSDESK_DESKTOP_CLIPBOARD_MB", 16)),
                        help="most megabytes of text or image copied each way between browser and desktop "
                        "(default 16)")
    parser.add_argument("--file-limit", type=int, default=int(os.environ.get("HEPSDESK_DESKTOP_FILE_MB", 20 << 10)),
                        help="most megabytes of one file uploaded to or downloaded from the desktop (default 20480)")
    parser.add_argument("--ice-servers", default=os.environ.get("HEPSDESK_DESKTOP_ICE_SERVERS", ""),
                        help="comma-separated STUN/TURN URLs (stun:host:3478, turn:host:3478?transport=udp, "
                        "turns:host:5349) for browsers that cannot reach the VM directly "
                        "(default: $HEPSDESK_DESKTOP_ICE_SERVERS; none under a hub: the hub gives them)")
    parser.add_argument("--turn-secret-file", default=os.environ.get("HEPSDESK_DESKTOP_TURN_SECRET_FILE", ""),
                        help="file with the TURN server's shared secret (coturn's static-auth-secret): each "
                        "session gets credentials made from it (default: $HEPSDESK_DESKTOP_TURN_SECRET_FILE). "
                        "For a desktop run on its own only: in a VM its user could read it; the hub mints there")
    parser.add_argument("--ice-policy", choices=POLICIES, default=os.environ.get("HEPSDESK_DESKTOP_ICE_POLICY", "all"),
                        help="all (default) or relay: the browser sends media only through the TURN server")
    parser.add_argument("--ice-address", default="",
                        help="comma-separated addresses to offer as ICE host candidates "
                        "(default: $HEPSDESK_DESKTOP_ICE_ADDRESSES, else $HEPSDESK_VM_ADDRESS, else all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[desktop %(levelname)s %(asctime)s] %(message)s")
    asyncio.run(serve(args, listening))
