"""A real headless Chromium for the tests of minigpt's web pages (Debian's chromium and
chromedriver, `apt-get install chromium chromium-driver` as .ci/run does): without
them those tests fail, they do not skip. Alerts are recorded, the console and the
network are logged."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("MINIGPT_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("MINIGPT_CHROMEDRIVER", "/usr/bin/chromedriver"))
# Alerts are recorded instead of shown, from before any script of the page runs.
RECORD_ALERTS = "window.__alerts = []; window.alert = function (m) { window.__alerts.push(m); };"


@contextmanager
def chromium(what: str, size: str) -> Iterator[Any]:
    """A headless Chromium with a `size` ("W,H") window, for testing `what`."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found: {what} tested in a real browser; install "
            "Debian's chromium and chromium-driver (apt-get install -y chromium "
            "chromium-driver, as .ci/run does)",
            pytrace=False,
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[test]'", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={size}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_ALERTS})
    try:
        yield browser
    finally:
        browser.quit()


def wait_loaded(browser: Any, seconds: float = 60) -> None:
    """Wait until the page has loaded (`get` can return early on a busy machine); fail
    if it has not within `seconds`."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, seconds).until(
        lambda b: b.execute_script("return document.readyState") == "complete",
        f"the page did not finish loading in {seconds:g} s",
    )
