"""A stand-in for the predictor behind the gateway under test: GET /ready and
/model, POST /predict, answered with the host name (which server was reached).

The component under test is HAProxy, not the predictor, so this is all the
backend needs to be. Usage: python3 standin.py PORT
"""

import contextlib
import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = socket.gethostname()


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        # health checks close their connection as soon as they read the status
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/ready":
            self._send(200, {"status": "ready", "served_by": HOST})
        elif self.path == "/model":
            self._send(200, {"name": "iris", "version": "1", "served_by": HOST})
        else:
            self._send(404, {"error": "not_found", "detail": self.path})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/predict":
            self._send(404, {"error": "not_found", "detail": self.path})
            return
        rows = body.get("instances", [])
        self._send(200, {"predictions": ["setosa"] * len(rows), "served_by": HOST})

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()  # noqa: S104
