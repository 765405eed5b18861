"""Serve one OpenStack API's WSGI application on a loopback address.

OpenStack services now ship only WSGI modules (``keystone.wsgi.api`` and friends) and leave
the HTTP server to the deployment (uwsgi, mod_wsgi). The dev cloud serves each with cheroot:
pure Python, threaded, HTTP/1.1 with keep-alive and chunked request bodies (Glance image
uploads from Nova snapshots arrive chunked, which wsgiref cannot read).

``python hepsdesk_serve_wsgi.py MODULE:ATTR --host 127.0.0.1 --port 5000
[--after-import MODULE:FUNC] [--threads N]``
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time


def _load(spec: str):
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


class AccessLog:
    """WSGI middleware writing one line per request: method, path, status, duration.

    It also closes the connection after a request with a chunked body: cheroot cannot read
    the next request of a kept-alive connection once the application has consumed a chunked
    body (Nova's snapshot uploads to Glance), and answers it with a 500.
    """

    def __init__(self, app, stream):
        self.app = app
        self.stream = stream

    def __call__(self, environ, start_response):
        started = time.monotonic()
        wall = time.time()
        status_holder = []

        chunked = environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"

        def recording_start_response(status, headers, exc_info=None):
            status_holder.append(status.split(" ", 1)[0])
            if chunked:
                headers = [(k, v) for k, v in headers if k.lower() != "connection"] + [("Connection", "close")]
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, recording_start_response)
        finally:
            stamp = time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall % 1 * 1000):03d}"
            self.stream.write(f"ACCESS {stamp} {environ.get('REMOTE_ADDR', '-')} {environ['REQUEST_METHOD']} "
                              f"{environ.get('PATH_INFO', '')} {status_holder[0] if status_holder else '-'} "
                              f"{(time.monotonic() - started) * 1000:.0f}ms\n")
            self.stream.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", help="MODULE:ATTR of the WSGI application")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--after-import", action="append", default=[],
                        help="MODULE:FUNC to call once the application is imported")
    args = parser.parse_args(argv)
    # oslo.config parses sys.argv while the application module initialises.
    sys.argv = [sys.argv[0]]
    app = _load(args.app)
    for hook in args.after_import:
        _load(hook)()

    from cheroot import wsgi

    server = wsgi.Server((args.host, args.port), AccessLog(app, sys.stderr), numthreads=args.threads,
                         request_queue_size=128, server_name=args.app.split(".")[0])
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    try:
        server.prepare()
    except OSError as e:
        print(f"hepsdesk_serve_wsgi: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    print(f"hepsdesk_serve_wsgi: serving {args.app} on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
