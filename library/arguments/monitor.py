"""The live training monitor (`--monitor`, docs/monitor.md); off by default, so kohya command lines are unchanged."""

from __future__ import annotations

import argparse

DEFAULT_PORT = 8765


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training monitor")
    g.add_argument("--monitor", action="store_true",
                   help="Serve a live page of the run (progress, loss and learning-rate charts, samples, events, "
                        "Save now and Stop buttons); the trainer prints its URL, with a random access token.")
    g.add_argument("--monitor_port", type=int, default=DEFAULT_PORT,
                   help=f"Port of the monitor page (default {DEFAULT_PORT}; the next free one if it is taken).")
    g.add_argument("--monitor_host", type=str, default="127.0.0.1",
                   help="Address the monitor listens on (default 127.0.0.1, this machine only). Another address "
                        "needs --monitor_allow_remote; SSH port forwarding is the safer way to watch from elsewhere.")
    g.add_argument("--monitor_allow_remote", action="store_true",
                   help="Allow a --monitor_host other than loopback: anyone who can reach it and has the token can "
                        "save and stop the run.")
