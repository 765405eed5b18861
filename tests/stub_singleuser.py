"""A stand-in for jupyterhub-singleuser in a dev-cloud VM: answers ``{"version": "stub"}`` on
the address and port JupyterHub gives it (``JUPYTERHUB_SERVICE_URL``), for benchmarks that
start a hundred servers (no JupyterLab to start on two cores) and tests of readiness.

    python tests/stub_singleuser.py [--own-prefix-after SECONDS]

``--own-prefix-after``: answer at the server's own prefix (``JUPYTERHUB_SERVICE_PREFIX``) only
after that many seconds, 404 before, and at the default server's URL (``/user/<name>/api``)
from the start: as a server started with the wrong prefix would.
"""

import argparse
import http.server
import json
import os
import time
import urllib.parse


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--own-prefix-after", type=float, default=None)
    args = parser.parse_args()
    url = urllib.parse.urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    own = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/") + "api"
    default = f"/user/{os.environ.get('JUPYTERHUB_USER', '')}/api"
    started = time.monotonic()

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if args.own_prefix_after is None:
                ok = True
            else:
                ok = self.path == default or (self.path == own and time.monotonic() - started > args.own_prefix_after)
            body = json.dumps({"version": "stub"}).encode() if ok else b"404: Not Found"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer((url.hostname, url.port), Answer).serve_forever()


if __name__ == "__main__":
    main()
