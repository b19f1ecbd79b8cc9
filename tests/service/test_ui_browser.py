"""The dashboard in a real browser: Debian's Chromium, driven through its chromedriver by
Selenium, against a real ``qldm serve`` on loopback (auth on, two tenants) with real jobs.

A small training loop (``QuantumLayer(url=..., run_id=...)``, one job per step) reports its
losses through :class:`qldm.hybrid.run_losses.RunLossReporter`, as ``qldm train`` does. The
browser must show the run, see its loss curve grow without a reload, show a cancelled job as
cancelled, and answer another tenant's run with the 404 page. The screenshot of the run's page
is saved under the test's temporary folder (its path is printed; ``QLDM_UI_SCREENSHOT`` names
another file).

Chromium and chromedriver come from Debian (``apt-get install chromium chromium-driver``, tried
here when they are missing and the tests run as root); without them the test is skipped, saying
why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from qldm.client import QuantumLayer, ServiceClient
from qldm.hybrid.run_losses import RunLossReporter
from qldm.service.server import create_key
from tests.service.conftest import Server
from tests.service.helpers import TINY, slow_request

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

pytestmark = pytest.mark.timeout(180)

DEBIAN_PACKAGES = ("chromium", "chromium-driver")


def _chromium() -> tuple[str, str] | str:
    """The paths of chromium and chromedriver, installing Debian's packages when they are
    missing and this is a root shell with apt-get; else the reason they are not there."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if all(found):
        return found[0] or "", found[1] or ""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "chromium/chromedriver missing and apt-get cannot install them here (not root)"
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", *DEBIAN_PACKAGES]):
        done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            return f"`{' '.join(step)}` failed: {done.stderr.strip()[-300:]}"
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if not all(found):
        return "chromium-driver installed, but chromium/chromedriver are not on PATH"
    return found[0] or "", found[1] or ""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    paths = _chromium()
    if isinstance(paths, str):
        pytest.skip(paths)
    chromium, chromedriver = paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(arg)
    options.add_argument("--disable-dev-shm-usage")
    try:
        driver = webdriver.Chrome(
            options=options, service=webdriver.ChromeService(executable_path=chromedriver)
        )
    except WebDriverException as exc:
        pytest.skip(f"chromium cannot start here: {exc.msg}")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    root = tmp_path_factory.mktemp("ui-server")
    srv = Server(f"sqlite:///{root / 'qldm.sqlite3'}", root, QLDM_AUTH="on")
    keys = {t: create_key(t, settings=srv.settings()) for t in ("alice", "bob")}
    srv.start()
    try:
        yield srv, keys
    finally:
        srv.stop()


def _wait(what: str, check: Callable[[], Any], *, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            last = check()
        except WebDriverException as exc:  # the page redrew under us: try again
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def _train(layer: QuantumLayer, reporter: RunLossReporter, steps: range) -> None:
    """A few optimiser steps on a tiny regression: one server job per step, losses reported."""
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    x = torch.linspace(-1, 1, 8, dtype=torch.float64).reshape(4, 2)
    target = torch.tensor([[0.5, -0.5]] * 4, dtype=torch.float64)
    for step in steps:
        opt.zero_grad()
        loss = ((layer(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
        reporter.add({"step": float(step), "loss": loss.item()})
    reporter.flush()


def _points(driver: Any, selector: str) -> int:
    return int(driver.find_element(By.CSS_SELECTOR, selector).get_attribute("data-points"))


def test_the_dashboard_shows_runs_losses_cancellation_and_hides_other_tenants(
    browser: Any, server: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    srv, keys = server
    alice = ServiceClient(srv.url, api_key=keys["alice"])
    bob = ServiceClient(srv.url, api_key=keys["bob"])
    run = alice.create_run(name="ui-browser-test", backend="exact")
    layer = QuantumLayer(
        TINY.model_dump(mode="json"), url=srv.url, api_key=keys["alice"], run_id=run["id"]
    )
    reporter = RunLossReporter(srv.url, api_key=keys["alice"], run_id=run["id"], every_s=0.0)
    _train(layer, reporter, range(0, 5))

    # without a key the server refuses, and the page says so
    browser.get(f"{srv.url}/ui")
    _wait("the key prompt", lambda: browser.find_elements(By.ID, "need-key"))
    browser.find_element(By.ID, "key-input").send_keys(keys["alice"])
    browser.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()

    # the run appears in the overview, with its loss sparkline
    row = f'#runs tr[data-run="{run["id"]}"]'
    _wait("the run's row", lambda: browser.find_elements(By.CSS_SELECTOR, row))
    assert "ui-browser-test" in browser.find_element(By.CSS_SELECTOR, row).text
    assert _wait("the sparkline", lambda: _points(browser, f"{row} svg") >= 5) is True

    # the run's page: its loss curve grows while the page stays (no reload)
    browser.get(f"{srv.url}/ui/runs/{run['id']}")
    _wait("the loss chart", lambda: _points(browser, "#loss-chart svg") == 5)
    browser.execute_script("window.__same_page = true;")
    _train(layer, reporter, range(5, 12))
    _wait("the curve to grow", lambda: _points(browser, "#loss-chart svg") == 12)
    assert browser.execute_script("return window.__same_page === true;")
    assert browser.find_element(By.ID, "loss-count").text == "(12 steps reported)"

    # a job cancelled while it runs shows as cancelled in the run's jobs
    job = alice.submit({**slow_request(7, batch=400), "run_id": run["id"]})
    alice.cancel(job["id"])
    cancelled = f'#run-jobs tr[data-job="{job["id"]}"][data-status="cancelled"]'
    _wait("the cancelled job", lambda: browser.find_elements(By.CSS_SELECTOR, cancelled))
    assert "cancelled" in browser.find_element(By.CSS_SELECTOR, cancelled).text
    counts = browser.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert "12 succeeded" in counts and "1 cancelled" in counts

    shot = Path(os.environ.get("QLDM_UI_SCREENSHOT") or tmp_path / "qldm-ui-run.png")
    assert browser.save_screenshot(str(shot))
    print(f"dashboard screenshot: {shot}")

    # the job pages: state, attempts, timings; a succeeded job's circuits and backend time
    browser.get(f"{srv.url}/ui/jobs/{job['id']}")
    title = _wait("the job's title", lambda: browser.find_elements(By.ID, "job-title"))
    assert "cancelled" in title[0].text
    done = alice.list_jobs(run_id=run["id"], status="succeeded", limit=1)["data"][0]
    browser.get(f"{srv.url}/ui/jobs/{done['id']}")
    facts = _wait("the job's facts", lambda: browser.find_elements(By.CSS_SELECTOR, "dl.facts"))
    text = facts[0].text
    assert "succeeded" in browser.find_element(By.ID, "job-title").text
    assert "exact (no shots)" in text and "backend time" in text and "jacobian" in text

    # another tenant's run is a 404 page, in the dashboard as in the API
    theirs = bob.create_run(name="bob-secret", backend="exact")
    browser.get(f"{srv.url}/ui/runs/{theirs['id']}")
    _wait("the 404 page", lambda: browser.find_elements(By.ID, "not-found"))
    assert "bob-secret" not in browser.page_source
    browser.get(f"{srv.url}/ui")
    _wait("the overview", lambda: browser.find_elements(By.CSS_SELECTOR, row))
    assert theirs["id"] not in browser.page_source
    assert browser.save_screenshot(str(shot.with_name(shot.stem + "-overview.png")))
    reporter.close()
    alice.close()
    bob.close()


def test_swagger_ui_and_redoc_render_from_the_servers_own_assets(
    browser: Any, server: tuple[Server, dict[str, str]]
) -> None:
    """This machine has no route to a CDN: the pages render only if their scripts are local."""
    srv, _ = server
    browser.get(f"{srv.url}/docs")
    title = _wait(
        "Swagger UI", lambda: browser.find_elements(By.CSS_SELECTOR, ".swagger-ui .title")
    )
    assert "qldm" in title[0].text
    _wait("the operations", lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock"))
    scripts = browser.execute_script(
        "return [...document.querySelectorAll('script[src],link[href]')].map(e => e.src || e.href);"
    )
    assert scripts and all(s.startswith(srv.url) for s in scripts), scripts
    browser.get(f"{srv.url}/redoc")
    heading = _wait("ReDoc", lambda: browser.find_elements(By.CSS_SELECTOR, ".api-info h1"))
    assert "qldm" in heading[0].text
