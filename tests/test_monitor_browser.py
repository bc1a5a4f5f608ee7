"""The training monitor in a real browser (issue 20 point 5): one tiny training run with --monitor, watched by
headless Chromium through Selenium, from the first steps to the Stop button.

The tests share the run and go in file order (one xdist group): the page advances, draws a sample, Save now
writes a state, the guards hold, and Stop ends the run as Ctrl+C does. The page's screenshots go to
tests/artifacts/ (git-ignored) for a person to look at.

Breaks these catch (each tried once, each failed): `self.monitor.step(...)` removed from `_after_step` (the step
counter stays at 0); the page's poll loop not re-arming its timer (no new points); `self.monitor.samples(...)`
removed from `_sample`; `take_save_request` always 0 (no state after Save now); `close("stopped", ...)` before the
linger removed from `_interrupt` (the resume command never reaches the page).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from _stopped_run import check_stopped_output
from _tiny_run import tiny_model
from _train_process import TrainProcess
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.xdist_group("monitor_browser")

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TOTAL = 20000  # never reached: the run ends by the Stop button
PROMPTS = "a red circle --w 64 --h 64 --s 2\n"


@dataclass
class Monitored:
    process: TrainProcess
    driver: Any
    url: str
    out: Path

    @property
    def token(self) -> str:
        return self.url.rsplit("token=", 1)[1]

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
        """`check()` once it is truthy; fails with `what` and the trainer's last output after `timeout` s."""
        deadline = time.monotonic() + timeout
        while not (value := check()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} within {timeout} s; trainer said:\n{self.process.stderr[-2000:]}")
            time.sleep(0.2)
        return value

    def text(self, element_id: str) -> str:
        return self.driver.find_element(By.ID, element_id).text


def browser() -> Any:
    """Headless Chromium from the system's packages; a missing browser fails the test (it is part of CI)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: install them with `apt-get install -y chromium chromium-driver` "
                    f"(.ci/run does this).")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    tiny = tiny_model(tmp_path_factory.mktemp("tiny"))
    work = tmp_path_factory.mktemp("monitor")
    prompts = work / "prompts.txt"
    prompts.write_text(PROMPTS, encoding="utf-8")
    out = work / "out"
    driver = browser()
    process = TrainProcess(["--config_file", str(tiny / "train_args.toml"), "--output_dir", str(out),
                            "--max_train_steps", str(TOTAL), "--monitor", "--monitor_port", str(free_port()),
                            "--sample_prompts", str(prompts), "--sample_every_n_steps", "10"])
    try:
        deadline = time.monotonic() + 120
        while not (found := re.search(r"Training monitor: (http://\S+)", process.stdout)):
            assert process.proc.poll() is None and time.monotonic() < deadline, process.stderr[-3000:]
            time.sleep(0.1)
        driver.get(found.group(1))
        yield Monitored(process, driver, found.group(1), out)
    finally:
        driver.quit()
        if process.proc.poll() is None:
            process.proc.kill()
            process.wait()


def test_the_step_counter_and_the_loss_chart_advance(run: Monitored) -> None:
    first = run.wait("no step shown", lambda: int(run.text("step") or 0))
    points = run.wait("no loss point", lambda: int(run.driver.find_element(By.ID, "loss-chart")
                                                     .get_attribute("data-points") or 0))
    run.wait("the step counter did not advance", lambda: int(run.text("step")) > first + 5)
    run.wait("the loss chart gained no points", lambda: int(run.driver.find_element(By.ID, "loss-chart")
                                                            .get_attribute("data-points")) > points + 5)
    assert run.driver.find_elements(By.CSS_SELECTOR, "#loss-chart canvas"), "uPlot drew no chart"
    assert run.text("total") == str(TOTAL) and run.text("eta") != "-"
    assert "networks.lora_anima" in run.text("settings")


def test_a_sample_image_appears_with_its_prompt(run: Monitored) -> None:
    def loaded() -> bool:
        images = run.driver.find_elements(By.CSS_SELECTOR, "#samples img")
        return bool(images) and run.driver.execute_script("return arguments[0].naturalWidth", images[0]) == 64

    run.wait("no sample image loaded", loaded)
    assert "a red circle" in run.text("samples")


def test_save_now_writes_a_state_and_training_goes_on(run: Monitored) -> None:
    run.driver.find_element(By.ID, "save-now").click()
    WebDriverWait(run.driver, 10).until(expected_conditions.alert_is_present()).accept()
    event = run.wait("no state saved", lambda: re.search(r"step (\d+): (anima_tiny_lora-step\d+-state)",
                                                         run.text("events")))
    assert (run.out / event.group(2) / "train_state.json").is_file()
    assert (run.out / f"anima_tiny_lora-step{int(event.group(1)):08d}.safetensors").is_file()
    run.wait("training stopped after Save now", lambda: int(run.text("step")) > int(event.group(1)) + 2)


def raw_get(run: Monitored, path: str) -> tuple[int, bytes]:
    """`path` sent exactly as written: no client clean-up of `..`."""
    parts = urlsplit(run.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_request_without_the_token_is_refused(run: Monitored) -> None:
    for path in ("/", "/api/state", "/sample/0"):
        assert raw_get(run, path)[0] == 403, path
    assert raw_get(run, f"/api/state?token={run.token}")[0] == 200


def test_a_traversal_path_gets_nothing(run: Monitored) -> None:
    for path in ("/../../etc/passwd", f"/../../etc/passwd?token={run.token}",
                 f"/static/../../../../etc/passwd?token={run.token}"):
        status, body = raw_get(run, path)
        assert status in (403, 404) and b"root:" not in body, path


def test_the_page_is_readable(run: Monitored) -> None:
    """A screenshot for a person (tests/artifacts/monitor.png); the test checks what can be checked: the page fits
    a laptop screen's width without scrolling sideways."""
    ARTIFACTS.mkdir(exist_ok=True)
    assert run.driver.execute_script("return document.documentElement.scrollWidth") <= 1280
    run.driver.set_window_size(1280, 1250)  # tall enough for the samples below the charts
    assert run.driver.save_screenshot(str(ARTIFACTS / "monitor.png"))


def test_stop_saves_a_state_and_the_page_shows_the_resume_command(run: Monitored) -> None:
    run.driver.find_element(By.ID, "stop").click()
    WebDriverWait(run.driver, 10).until(expected_conditions.alert_is_present()).accept()
    assert run.process.wait(timeout=120) == 130, run.process.stderr[-3000:]
    step, state, _argv = check_stopped_output(run.process.stdout, run.out)
    assert "Stop asked for in the training monitor" in run.process.stderr
    run.wait("the resume command never reached the page", lambda: f"--resume {state}" in run.text("events"), 15)
    assert f"at step {step}" in run.text("events")
    run.wait("the page does not say the run stopped", lambda: run.text("run-status") in ("stopped", "offline"), 15)
    run.driver.save_screenshot(str(ARTIFACTS / "monitor-stopped.png"))
