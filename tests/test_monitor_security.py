"""The monitor's guards without a browser or a training run (issue 20 point 4): the token, the Origin of actions,
loopback unless allowed, routes that never reach the filesystem, and the next free port.

Breaks these catch (each tried once, each failed): `token_ok` returning True for a None token; `origin_ok` comparing
only the host name (another port's page could act); `check_monitor_options` without its loopback test; the POST
handler without its Origin check; `_bind` giving up on the first taken port.
"""

from __future__ import annotations

import http.client
import json
import socket
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import pytest

from library.errors import ConfigError
from library.monitor.security import check_monitor_options, is_loopback, new_token, origin_ok, token_ok
from library.monitor.server import MonitorServer
from library.monitor.snapshot import Snapshot


def test_the_token_is_random_and_only_the_exact_token_passes() -> None:
    token = new_token()
    assert len(token) >= 40 and token != new_token()
    assert token_ok(token, token)
    assert not token_ok(None, token) and not token_ok("", token) and not token_ok(token[:-1], token)
    assert not token_ok(token + "x", token) and not token_ok(token.upper() if token != token.upper() else "x", token)


def test_an_action_must_come_from_the_pages_own_origin() -> None:
    assert origin_ok("http://127.0.0.1:8765", "127.0.0.1:8765")
    assert origin_ok("http://localhost:9000", "localhost:9000")  # the local end of an SSH tunnel
    assert not origin_ok("http://127.0.0.1:8766", "127.0.0.1:8765"), "another port is another page"
    assert not origin_ok("http://evil.example", "127.0.0.1:8765")
    assert not origin_ok(None, "127.0.0.1:8765") and not origin_ok("null", "127.0.0.1:8765")
    assert not origin_ok("file:///tmp/x", "127.0.0.1:8765")


def options(host: str, allow: bool = False, port: int = 8765) -> Namespace:
    return Namespace(monitor=True, monitor_host=host, monitor_port=port, monitor_allow_remote=allow)


def test_a_remote_address_is_refused_unless_allowed() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host)
        check_monitor_options(options(host))
    for host in ("0.0.0.0", "192.168.1.5", "::", "myhost.example"):
        with pytest.raises(ConfigError, match="--monitor_allow_remote"):
            check_monitor_options(options(host))
        check_monitor_options(options(host, allow=True))
    with pytest.raises(ConfigError, match="--monitor_port 0"):
        check_monitor_options(options("127.0.0.1", port=0))
    check_monitor_options(Namespace(monitor=False, monitor_host="0.0.0.0"))  # nothing is served: nothing to refuse


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[MonitorServer, list[str]]]:
    snapshot = Snapshot(10, {"network": "lora"}, ["unet"])
    image = tmp_path / "sample.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 16)
    snapshot.add_sample(3, image, "a red circle")
    asked: list[str] = []
    server = MonitorServer(snapshot, "secret-token", {"stop": lambda: asked.append("stop") or "stopping"},
                           "127.0.0.1", free_port())
    server.start()
    yield server, asked
    server.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(server: MonitorServer, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A raw request: `path` goes out exactly as written (no client-side clean-up of `..`)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_every_route_needs_the_token(served: tuple[MonitorServer, list[str]]) -> None:
    server, asked = served
    for path in ("/", "/api/state", "/sample/0", "/static/monitor.js", "/../../etc/passwd"):
        assert request(server, "GET", path)[0] == 403, path
        assert request(server, "GET", path + "?token=wrong")[0] == 403, path
    origin = {"Origin": f"http://127.0.0.1:{server.port}"}
    assert request(server, "POST", "/api/stop", origin)[0] == 403 and not asked
    status, body = request(server, "GET", "/api/state?token=secret-token")
    assert status == 200 and json.loads(body)["settings"] == {"network": "lora"}
    assert request(server, "GET", "/sample/0", {"X-Monitor-Token": "secret-token"}) [0] == 200


def test_no_path_from_the_request_reaches_the_filesystem(served: tuple[MonitorServer, list[str]]) -> None:
    server, _ = served
    for path in ("/../../etc/passwd", "/static/../../../../etc/passwd", "/static/..%2F..%2Fserver.py",
                 "/sample/..%2F..%2Fetc%2Fpasswd", "/sample/1", "/sample/-1", "/static/index.html"):
        status, body = request(server, "GET", path + "?token=secret-token")
        assert status == 404 and b"root:" not in body, path


def test_actions_need_the_pages_origin(served: tuple[MonitorServer, list[str]]) -> None:
    server, asked = served
    token = {"X-Monitor-Token": "secret-token"}
    for origin in ({}, {"Origin": "http://evil.example"}, {"Origin": f"http://127.0.0.1:{server.port + 1}"}):
        assert request(server, "POST", "/api/stop", token | origin)[0] == 403, origin
    assert not asked
    status, body = request(server, "POST", "/api/stop", token | {"Origin": f"http://127.0.0.1:{server.port}"})
    assert status == 200 and json.loads(body) == {"message": "stopping"} and asked == ["stop"]
    assert request(server, "POST", "/api/options", token | {"Origin": f"http://127.0.0.1:{server.port}"})[0] == 404


def test_a_taken_port_moves_the_monitor_to_the_next_free_one(served: tuple[MonitorServer, list[str]]) -> None:
    taken, _ = served
    second = MonitorServer(Snapshot(1, {}, []), "t", {}, "127.0.0.1", taken.port)
    try:
        assert second.port > taken.port
    finally:
        second.close()
