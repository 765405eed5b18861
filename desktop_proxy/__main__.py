"""``python -m desktop_proxy``: the desktop server.

Its socket is bound first, before the desktop's modules are imported (half a second), so
jupyter-server-proxy's readiness probe, which backs off exponentially, waits in the socket's
queue and is answered the moment the desktop is up (``server.Starting``) instead of at its
next try.
"""

import os
import socket
import stat
import sys


def option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg[len(name) + 1:]
    return None


def listen_early(argv: list[str]) -> socket.socket | None:
    """The server's socket, listening: ``--unix-socket`` (mode 600) or ``--port`` on 127.0.0.1;
    None when neither is given plainly (the server binds it, or says what is wrong)."""
    path, port = option(argv, "--unix-socket"), option(argv, "--port")
    if path:
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)  # a desktop's before this one
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        umask = os.umask(0o177)  # never reachable by others, not even between bind and chmod
        try:
            sock.bind(path)
        finally:
            os.umask(umask)
        os.chmod(path, 0o600)
    elif port and port.isdigit():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", int(port)))
    else:
        return None
    sock.setblocking(False)
    sock.listen(128)
    return sock


listening = listen_early(sys.argv[1:])

from .server import main  # noqa: E402  (after the socket: see above)

main(listening=listening)
