"""The HTML pages of `minigpt inspect` (minigpt.inspect.html), opened in a real headless
Chromium: no console error, no request but the page's own file, the widget shows the
numbers `attention_lists` gives, hovering moves the highlight, and a token label that
is markup stays text.

Chromium and chromedriver are Debian's (`apt-get install chromium chromium-driver`, as
.ci/run does); without them these tests fail, they do not skip. Screenshots go to
$MINIGPT_SCREENSHOT_DIR when set, else to the test's tmp_path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from minigpt.inspect.attention import attention_lists
from minigpt.inspect.forward import trace_prompt
from minigpt.inspect.html import SECTIONS, attention_html, report_html, script_json
from minigpt.inspect.surprise import surprise
from minigpt.tokenizer.encodings import CharTokenizer
from tests.browser import chromium, wait_loaded
from tests.test_inspect import PROMPT, make

PLANTED = "</script><script>alert(1)</script>"
PLANTED_ATTR = "\"'><img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    """One headless Chromium for the module, logging the console and the network."""
    with chromium("the HTML pages are", "1300,1600") as browser:
        yield browser


def open_page(driver: Any, path: Path) -> None:
    """Load `path`, then check the console has no error and the only request was the
    page itself."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get_log("performance")
    url = path.as_uri()
    driver.get(url)
    wait_loaded(driver)
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    assert [unquote(u) for u in requests] == [unquote(url)], requests
    assert driver.execute_script("return window.__alerts") == []


def screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    """The whole page as a PNG, in $MINIGPT_SCREENSHOT_DIR or tmp_path."""
    folder = Path(os.environ.get("MINIGPT_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight") + 40
    metrics = {"width": 1300, "height": min(height, 8000), "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    path = folder / f"{name}.png"
    try:
        assert driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert path.stat().st_size > 10_000  # a page, not a blank
    return path


def shown_cells(driver: Any) -> list[list[Any]]:
    """Every heatmap cell as [q, k, data-w, title, masked]."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#heatmap .cell')).map(c => "
        "[+c.dataset.q, +c.dataset.k, c.dataset.w, c.title, c.classList.contains('masked')])"
    )


def token_weights(driver: Any, side: str) -> list[str | None]:
    """data-weight of the token view's tokens on one side ("q" or "k")."""
    return driver.execute_script(
        f"return Array.from(document.querySelectorAll('.tv-col.{side} .tok'))"
        ".map(t => t.dataset.weight === undefined ? null : t.dataset.weight)"
    )


def hover(driver: Any, css: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.CSS_SELECTOR, css)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    ActionChains(driver).move_to_element(element).perform()


@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_the_attention_page_shows_the_numbers_of_attention_lists(
    driver: Any, tmp_path: Path, pos: str
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    model, tok = make(pos)
    traced = trace_prompt(model, tok, PROMPT)
    expected = attention_lists(traced)
    page = tmp_path / "attention.html"
    page.write_text(attention_html(traced, f"attention, {pos}"), encoding="utf-8")
    open_page(driver, page)

    data = json.loads(driver.find_element(By.ID, "data").get_attribute("textContent"))
    assert data == {"tokens": traced.labels, "attention": expected}
    n_layer, n_head, T = len(expected), len(expected[0]), len(traced.ids)
    layer, head = (
        Select(driver.find_element(By.ID, "layer")),
        Select(driver.find_element(By.ID, "head")),
    )
    assert len(layer.options) == n_layer and len(head.options) == n_head
    for ly, h in [(0, 0), (n_layer - 1, n_head - 1), (1, 2)]:
        layer.select_by_value(str(ly))
        head.select_by_value(str(h))
        cells = shown_cells(driver)
        assert len(cells) == T * T
        for q, k, w, title, masked in cells:
            assert float(w) == pytest.approx(expected[ly][h][q][k], abs=5.1e-5)
            assert w in title and masked == (k > q)
        selected = driver.find_elements(By.CSS_SELECTOR, "#overview figure.selected")
        assert [f.get_attribute("data-head") for f in selected] == [str(h)]

    # Hovering a query token shades the keys it looks at with the head's weights and
    # draws a line to each; another token moves the highlight.
    assert token_weights(driver, "k") == [None] * T
    hover(driver, '.tv-col.q .tok[data-i="5"]')
    row = [f"{w:.4f}" for w in expected[1][2][5]]
    assert token_weights(driver, "k") == row
    lines = driver.find_elements(By.CSS_SELECTOR, "svg.tv-lines line")
    assert sorted(int(x.get_attribute("data-k")) for x in lines) == list(range(6))
    hover(driver, '.tv-col.k .tok[data-i="2"]')
    assert token_weights(driver, "q") == [f"{expected[1][2][q][2]:.4f}" for q in range(T)]
    assert token_weights(driver, "k") == [None] * T
    # A click pins a token: the highlight stays when the mouse leaves.
    driver.find_element(By.CSS_SELECTOR, '.tv-col.q .tok[data-i="7"]').click()
    hover(driver, "h1")
    assert token_weights(driver, "k") == [f"{w:.4f}" for w in expected[1][2][7]]
    # A small heatmap selects its head.
    driver.find_element(By.CSS_SELECTOR, '#overview figure[data-head="0"]').click()
    assert head.first_selected_option.get_attribute("value") == "0"
    assert token_weights(driver, "k") == [f"{w:.4f}" for w in expected[1][0][7]]
    assert driver.get_log("browser") == []
    screenshot(driver, tmp_path, f"attention-{pos}")


@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_the_report_page_holds_every_view(driver: Any, tmp_path: Path, pos: str) -> None:
    from selenium.webdriver.common.by import By

    model, tok = make(pos)
    page = tmp_path / "report.html"
    page.write_text(report_html(model, tok, PROMPT, f"report, {pos}"), encoding="utf-8")
    open_page(driver, page)
    links = driver.find_elements(By.CSS_SELECTOR, "nav#toc a")
    assert [a.get_attribute("hash") for a in links] == [f"#{key}" for key, _ in SECTIONS]
    for key, name in SECTIONS:
        section = driver.find_element(By.ID, key)
        assert section.find_element(By.TAG_NAME, "h2").text == name
    js = driver.execute_script
    n_layer = model.config.n_layer
    assert js("return document.querySelectorAll('#layer option').length") == n_layer
    assert js("return document.querySelectorAll('#heatmap .cell').length") == len(PROMPT) ** 2
    assert js("return document.querySelectorAll('#weights table').length") >= 2
    heatmaps = js("return document.querySelectorAll('#positions canvas.heat').length")
    assert heatmaps == (2 if pos == "learned" else 0)
    assert js("return document.querySelectorAll('#positions svg polyline').length") == (
        1 if pos == "rope" else 0
    )
    assert js("return document.querySelectorAll('#pca circle').length") == tok.vocab_size
    assert js("return document.querySelectorAll('#lens tr').length") == n_layer + 2
    assert js("return document.querySelectorAll('#next .dist').length") == 3
    assert js("return document.querySelectorAll('#surprise .surprise span').length") == len(PROMPT)
    bpb = surprise(model, tok, PROMPT).bits_per_byte
    assert f"{bpb:.4f} bits per byte" in driver.find_element(By.ID, "surprise").text
    screenshot(driver, tmp_path, f"report-{pos}")


def test_a_token_label_that_is_markup_stays_text(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    model, tok = make("learned")
    chars = tok._chars  # plant two labels into the char tokenizer's vocabulary
    chars[chars.index("q")] = PLANTED
    chars[chars.index("u")] = PLANTED_ATTR
    assert isinstance(tok, CharTokenizer)
    prompt = "To be, q or u"
    traced = trace_prompt(model, tok, prompt)
    assert PLANTED in traced.labels and PLANTED_ATTR in traced.labels
    pages = {
        "attention": attention_html(traced, PLANTED),
        "report": report_html(model, tok, prompt, PLANTED_ATTR),
    }
    for name, text in pages.items():
        page = tmp_path / f"{name}.html"
        page.write_text(text, encoding="utf-8")
        open_page(driver, page)  # also: no alert, no request for "x"
        js = driver.execute_script
        assert js("return document.scripts.length") == (2 if name == "attention" else 3)
        assert js("return document.images.length") == 0
        data = json.loads(driver.find_element(By.ID, "data").get_attribute("textContent"))
        assert data["tokens"] == traced.labels
        rows = js("return Array.from(document.querySelectorAll('#heatmap .lab.row'))"
                  ".map(e => [e.textContent, e.title])")  # fmt: skip
        assert [title for _, title in rows] == [f"{i}: {s}" for i, s in enumerate(traced.labels)]
        assert {PLANTED, PLANTED_ATTR} <= {text for text, _ in rows}
        assert driver.title == (PLANTED if name == "attention" else PLANTED_ATTR)
        if name == "report":
            lens = driver.find_element(By.ID, "lens").text
            assert PLANTED in lens and PLANTED_ATTR in lens
            assert len(driver.find_elements(By.CSS_SELECTOR, "#surprise .surprise span")) == len(
                traced.ids
            )


def test_script_json_cannot_close_the_script_element() -> None:
    value = {"tokens": [PLANTED, "<!--", "a & b", "\u2028"], "x": [0.5]}
    text = script_json(value)
    assert not set("<>&\u2028") & set(text)
    assert json.loads(text) == value
