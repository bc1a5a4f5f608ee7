"""A live training monitor in the browser (`--monitor`): progress, charts, samples, events, Save now and Stop.

`run_monitor.RunMonitor` is all the training loop sees; the server (`server.py`) reads a snapshot (`snapshot.py`) in
its own thread, behind a token and an Origin check (`security.py`). Nothing is imported here, so the start-up
checks can use `security` before torch loads. See docs/monitor.md.
"""
