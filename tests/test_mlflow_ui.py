"""The MLflow UI as a user opens it, in a real browser: Debian's chromium, headless, driven by
chromedriver, against `mlflow server` on loopback over the shared smoke sweep's store.

- The URL the sweep prints lands on the runs table with the parent and every child run (not on
  MLflow 3's GenAI view, and not on a collapsed parent).
- The parent's report.html, in MLflow's artifact viewer, shows the frontier figure as an image
  the browser decoded (naturalWidth > 0), not as link text.

Skips, saying why, where chromium or chromedriver is missing (.ci/run installs them).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import kill_group, mlflow_server_env, sweep_store
from xfer.tracking.ui import LOCAL_UI

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="chromium and chromedriver are not installed (Debian: apt-get install chromium "
           "chromium-driver; .ci/run does it)")]

WAIT_S = 90  # the UI's first load compiles a few MB of JavaScript; ~5 s here, generous for CI


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_ui(smoke_sweep, tmp_path_factory):
    """`mlflow server` over the smoke sweep's SQLite store, on 127.0.0.1; its base URL."""
    folder = smoke_sweep[0]
    port = _free_port()
    log = (tmp_path_factory.mktemp("ui") / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=folder, env=mlflow_server_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        # `mlflow server` answered in 23 s beside the other worker's sweeps (measured 2026-12-01)
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, \
                f"mlflow server did not start: {log.name}"
            time.sleep(1)
        yield base
    finally:
        kill_group(server)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # given, so Selenium Manager never looks online
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1800,1400"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _page_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def test_the_printed_url_shows_the_parent_and_every_child_run(smoke_sweep, mlflow_ui, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    folder, done, _ = smoke_sweep
    printed = re.search(r"runs of this sweep: (\S+)", done.stdout)
    assert printed, done.stdout[-2000:]
    url = printed.group(1)
    _, experiment_id, parent, children = sweep_store(folder)
    assert url.startswith(f"{LOCAL_UI}/#/experiments/{experiment_id}/runs?")
    assert "workflowType=machine_learning" in url and "viewStateShareKey=" in url
    assert len(children) == 8

    browser.get(url.replace(LOCAL_UI, mlflow_ui))  # our server's port instead of mlflow ui's 5000
    names = [parent.info.run_name, *(c.info.run_name for c in children)]
    try:
        WebDriverWait(browser, WAIT_S).until(lambda d: all(name in _page_text(d) for name in names))
    except Exception:  # noqa: BLE001 - fail with what the page showed
        pytest.fail(f"runs missing from the page; it shows:\n{_page_text(browser)[:3000]}")
    text = _page_text(browser)
    assert "9 matching runs" in text  # the sweep's runs and nothing else: the filter is the sweep's


def test_the_parents_html_report_shows_the_frontier_figure(smoke_sweep, mlflow_ui, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    _, experiment_id, parent, _ = sweep_store(smoke_sweep[0])
    browser.get(f"{mlflow_ui}/#/experiments/{experiment_id}/runs/{parent.info.run_id}/artifacts/"
                "report.html?workflowType=machine_learning")
    frame = WebDriverWait(browser, WAIT_S).until(
        ready.presence_of_element_located((By.CSS_SELECTOR, "iframe.mlflow-html-iframe")))
    browser.switch_to.frame(frame)
    try:
        figure = WebDriverWait(browser, WAIT_S).until(
            lambda d: next((img for img in d.find_elements(By.TAG_NAME, "img")
                            if "frontier" in (img.get_attribute("alt") or "").lower()), None))
        WebDriverWait(browser, WAIT_S).until(
            lambda d: d.execute_script("return arguments[0].complete", figure))
        width = browser.execute_script("return arguments[0].naturalWidth", figure)
        source = figure.get_attribute("src")
        headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    finally:
        browser.switch_to.default_content()
    assert source.startswith("data:image/png;base64,")  # embedded: the viewer's iframe has no files
    assert width > 100, f"the frontier image did not decode (naturalWidth {width})"
    assert "Summary" in headings
