"""The monitor's guards: a random token on every request, the Origin of every action, and loopback by default.

The page can save and stop a run, so it must not be reachable by whoever can reach the port (another user of the
machine, a web page in the user's own browser): the token is in the URL the trainer prints and nowhere else, and an
action's Origin must be the page's own, which a cross-site form or script cannot fake.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from argparse import Namespace
from urllib.parse import urlsplit

from library.errors import ConfigError

TOKEN_HEADER = "X-Monitor-Token"


def new_token() -> str:
    """32 random bytes, URL-safe: unguessable, and it survives a copy from the terminal into the address bar."""
    return secrets.token_urlsafe(32)


def token_ok(given: str | None, token: str) -> bool:
    """Compared in constant time, so the response time tells nothing about how much of a guess was right."""
    return given is not None and hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def origin_ok(origin: str | None, host: str | None) -> bool:
    """An action (POST) must come from a page served by this monitor: its Origin names the same host and port the
    browser sent the request to (the Host header; through an SSH tunnel both are the tunnel's end). A browser always
    sends Origin with a POST, so a missing one is refused too."""
    if not origin or not host:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower() and not parts.path


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_monitor_options(args: Namespace) -> None:
    """At start-up: a --monitor_host other than loopback needs --monitor_allow_remote, and the port must be one."""
    if not getattr(args, "monitor", False):
        return
    port = args.monitor_port
    if not 1 <= port <= 65535:
        raise ConfigError(f"--monitor_port {port}: use a TCP port between 1 and 65535 (default 8765).")
    if not is_loopback(args.monitor_host) and not args.monitor_allow_remote:
        raise ConfigError(f"--monitor_host {args.monitor_host}: the monitor can save and stop this run, so it only "
                          f"listens on this machine (127.0.0.1) unless you also pass --monitor_allow_remote. Better: "
                          f"keep the default and forward the port over SSH (ssh -L {port}:127.0.0.1:{port} host), "
                          f"see docs/monitor.md.")
