"""The monitor's HTTP server: Python's own ThreadingHTTPServer in a daemon thread, reading the snapshot.

Routes are a fixed table: the page, its static files by name, the state as JSON, sample images by the id the run
gave them, and two actions. Nothing from the request is joined to a path, so `/../../etc/passwd` is just a route
that does not exist. Every request needs the token (403 before anything else), actions also the page's Origin.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from library.monitor.security import TOKEN_HEADER, origin_ok, token_ok
from library.monitor.snapshot import Snapshot

PORT_TRIES = 20
STATIC = {"monitor.js": "text/javascript", "monitor.css": "text/css", "uPlot.iife.min.js": "text/javascript",
          "uPlot.min.css": "text/css"}
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                    "X-Frame-Options": "DENY",
                    "Content-Security-Policy": "default-src 'self'; img-src 'self'; script-src 'self'; "
                                               "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"}


def static_bytes(name: str) -> bytes:
    return resources.files("library.monitor").joinpath("static", name).read_bytes()


class MonitorServer:
    """Serves `snapshot` on the first free port from `port` on; `actions` maps "save" / "stop" to what the page's
    buttons ask for (each only sets a flag the loop reads at the next step boundary)."""

    def __init__(self, snapshot: Snapshot, token: str, actions: dict[str, Callable[[], str]], host: str,
                 port: int) -> None:
        self.snapshot, self.token, self.actions = snapshot, token, actions
        self.served_version, self.last_request = -1, 0.0
        self.httpd = _bind(host, port, _handler_for(self))
        self.host, self.port = host, self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="training-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, linger_s: float = 0.0) -> None:
        """Stop serving; an open page (one that asked within the last 10 s) gets up to `linger_s` to fetch the last
        state first, so a stopped run's resume command reaches the page before the process ends."""
        deadline = time.monotonic() + linger_s
        while time.monotonic() < deadline and time.time() - self.last_request < 10 \
                and self.served_version < self.snapshot.version:
            time.sleep(0.05)
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which an unstarted server never runs
            self.httpd.shutdown()
        self.httpd.server_close()


def _bind(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """The first port from `port` on that is free (8765 may be another run's monitor)."""
    server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
    for candidate in range(port, min(port + PORT_TRIES, 65536)):
        try:
            server = server_class((host.strip("[]"), candidate), handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        server.daemon_threads = True
        return server
    raise OSError(errno.EADDRINUSE, f"ports {port}-{port + PORT_TRIES - 1} on {host} are all in use")


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler_for(monitor: MonitorServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_MonitorHandler):
        server_state = monitor

    return Handler


class _MonitorHandler(BaseHTTPRequestHandler):
    server_state: MonitorServer
    timeout = 10  # a client that stops reading frees its thread
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base class's name)
        """Quiet: the console belongs to the training's progress bar."""

    def _authorised(self) -> tuple[str, dict[str, list[str]]] | None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        given = self.headers.get(TOKEN_HEADER) or (query.get("token") or [None])[0]
        if not token_ok(given, self.server_state.token):
            self._send(HTTPStatus.FORBIDDEN, b"A valid monitor token is needed: open the URL the trainer printed.",
                       "text/plain; charset=utf-8")
            return None
        self.server_state.last_request = time.time()
        return parts.path, query

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        request = self._authorised()
        if request is None:
            return
        path, query = request
        state = self.server_state
        if path in ("/", "/index.html"):
            page = static_bytes("index.html").replace(b"{{TOKEN}}", state.token.encode("ascii"))
            self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
        elif path.startswith("/static/") and path[len("/static/"):] in STATIC:
            name = path[len("/static/"):]
            self._send(HTTPStatus.OK, static_bytes(name), STATIC[name])
        elif path == "/api/state":
            since = (query.get("since") or ["0"])[0]
            view = state.snapshot.view(int(since) if since.isdigit() else 0)
            state.served_version = max(state.served_version, view["version"])
            self._send(HTTPStatus.OK, json.dumps(view).encode("utf-8"), "application/json")
        elif path.startswith("/sample/") and path[len("/sample/"):].isdigit():
            self._send_sample(int(path[len("/sample/"):]))
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain; charset=utf-8")

    def _send_sample(self, sample_id: int) -> None:
        file = self.server_state.snapshot.sample_file(sample_id)
        kind = IMAGE_TYPES.get(file.suffix.lower()) if file is not None else None
        try:
            data = file.read_bytes() if file is not None and kind else None
        except OSError:  # deleted since it was written
            data = None
        if data is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain; charset=utf-8")
        else:
            self._send(HTTPStatus.OK, data, kind or "application/octet-stream")

    def do_POST(self) -> None:  # noqa: N802
        self.close_connection = True  # an action carries no body; whatever was sent is dropped with the connection
        request = self._authorised()
        if request is None:
            return
        path, _query = request
        if not origin_ok(self.headers.get("Origin"), self.headers.get("Host")):
            self._send(HTTPStatus.FORBIDDEN, b"Actions are only accepted from the monitor's own page.",
                       "text/plain; charset=utf-8")
            return
        action = self.server_state.actions.get(path[len("/api/"):]) if path.startswith("/api/") else None
        if action is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain; charset=utf-8")
            return
        self._send(HTTPStatus.OK, json.dumps({"message": action()}).encode("utf-8"), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
