"""The web page of `minigpt serve` (minigpt/serve/page.html), opened in a real headless
Chromium from a real server process: the header names the model, a reply streams in
token by token (each token's probability and alternatives on hover), Stop ends a reply
and keeps what was written, Regenerate and Undo, the inside panel (attention under a
layer and head choice, the next-token bars under a temperature slider, the logit lens),
a message that is markup stays text, and there is no console error nor any request
off the server's origin.

The reply's pace is set by throttling the browser's network (DevTools), so that "it
grows" and "Stop stops it" hold on a fast machine as on a slow one; the seed of the
replies is one the server answers at full length, found before the page asks.

Chromium and chromedriver are Debian's (`apt-get install chromium chromium-driver`, as
.ci/run does); without them these tests fail, they do not skip. Screenshots go to
$MINIGPT_SCREENSHOT_DIR when set, else to the test's tmp_path.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium
from tests.serving import Server, running_server, train_small_run, wait_ready

PROMPT = "Tell me a story about the sea."
LONG = 32  # tokens of a reply that streams to its limit (its seed is found first)
MARKUP = "<img src=x onerror=alert(1)>"
PACE = 12_000  # bytes a second the browser receives while a reply streams: ~15 tokens/s
SLOW = 5_000  # ... while a reply waits for Stop
ATTENTION_TOKENS = "return Array.from(document.querySelectorAll('.atok')).map(t => t.textContent)"
WAIT = 60  # seconds, at most, for anything the page does


def shown(label: str) -> str:
    """A token label as the page shows it: spaces as U+2423 where there is nothing else."""
    return label.replace(" ", "\u2423") if label.strip() == "" else label


@dataclass
class Page:
    """The server, the browser, and what the browser logged since the last check."""

    server: Server
    driver: Any
    seed: int
    console: list[dict] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)  # Network.requestWillBeSent params

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def drain(self) -> None:
        self.console += self.driver.get_log("browser")
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append(message["params"])

    def check_clean(self) -> None:
        """No console error or warning, no alert, and every request went to the server."""
        self.drain()
        noisy = [e for e in self.console if e["level"] in ("SEVERE", "WARNING")]
        assert not noisy, noisy
        urls = [r["request"]["url"] for r in self.requests]
        assert urls and all(u.startswith(self.server.url + "/") for u in urls), urls
        assert self.js("return window.__alerts") == []
        self.console.clear()
        self.requests.clear()

    def open(self) -> None:
        """A fresh page: loaded, the model's info shown."""
        self.driver.get(self.server.url + "/")
        self.wait(lambda: self.js("return document.getElementById('model-name').textContent")
                  == "bard")  # fmt: skip

    def wait(self, condition: Any, seconds: float = WAIT) -> None:
        end = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < end, "the page did not get there in time"
            time.sleep(0.02)

    def settings(self, **values: object) -> None:
        """Type values into the settings panel's fields (by id, `_` for `-`)."""
        if self.js("return document.getElementById('settings').hidden"):
            self.find("#settings-toggle").click()
        for name, value in values.items():
            box = self.find("#" + name.replace("_", "-"))
            box.clear()
            box.send_keys(str(value))

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def send(self, text: str) -> None:
        from selenium.webdriver.common.keys import Keys

        self.find("#input").send_keys(text, Keys.ENTER)

    def reply(self) -> dict[str, Any]:
        """The last reply: its token count, whether it is streaming, its classes, its meta."""
        return self.js(
            "const m = Array.from(document.querySelectorAll('#log .msg.model')).pop();"
            "return m ? {tokens: m.querySelectorAll('.tok').length,"
            " busy: m.getAttribute('aria-busy') === 'true', cls: m.className,"
            " meta: m.querySelector('.meta').textContent,"
            " stop: !document.getElementById('stop').disabled,"
            " probs: Array.from(m.querySelectorAll('.tok')).map(t => +t.dataset.p)} : null"
        )

    def replies(self) -> int:
        return self.js("return document.querySelectorAll('#log .msg.model').length")

    def wait_reply_done(self) -> dict[str, Any]:
        self.wait(lambda: (r := self.reply()) is not None and not r["busy"])
        return self.reply()

    def throttle(self, rate: int) -> None:
        """Bytes a second the browser receives (-1: as fast as they come)."""
        conditions = {"offline": False, "latency": 0, "uploadThroughput": -1,
                      "downloadThroughput": rate}  # fmt: skip
        self.driver.execute_cdp_cmd("Network.emulateNetworkConditions", conditions)

    def hover(self, css: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        element = self.find(css)
        self.js("arguments[0].scrollIntoView({block: 'center'})", element)
        ActionChains(self.driver).move_to_element(element).perform()

    def response(self, path: str) -> Any:
        """The JSON body of the page's last request to `path`."""
        self.drain()
        ids = [r["requestId"] for r in self.requests if r["request"]["url"].endswith(path)]
        assert ids, path
        body = self.driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": ids[-1]})
        return json.loads(body["body"])

    @contextlib.contextmanager
    def sized(self, width: int, height: int) -> Iterator[None]:
        """The page shown at width × height meanwhile."""
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        try:
            time.sleep(0.2)  # a frame at the new size
            yield
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def screenshot(self, folder: Path, name: str, width: int, height: int) -> Path:
        """The page at width × height as a PNG, in $MINIGPT_SCREENSHOT_DIR or `folder`."""
        folder = Path(os.environ.get("MINIGPT_SCREENSHOT_DIR") or folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        with self.sized(width, height):
            assert self.driver.save_screenshot(str(path))
        assert path.stat().st_size > 10_000  # a page, not a blank
        return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real `minigpt serve` of a tiny trained run (started here, waited for in `page`,
    so that the browser starts meanwhile)."""
    tmp = tmp_path_factory.mktemp("serve-page")
    run = train_small_run(tmp, "bard", "--max-iters", 2, "--eval-interval", 2)  # the page's
    # checks need a real run, not a good one
    with running_server(run, tmp=tmp, ready=False) as server:
        yield server


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    """One headless Chromium for the module, logging the console and the network."""
    with chromium("the server's page is", "1280,900") as browser:
        yield browser


@pytest.fixture(scope="module")
def page(server: Server, driver: Any) -> Page:
    """The page's browser and server, and a seed whose reply to PROMPT runs to LONG
    tokens (the page sends the same request, streamed)."""
    wait_ready(server)
    status, info = server.get("/v1/minigpt/info")
    assert status == 200, info
    for seed in range(1, 200):
        body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": LONG,
                "temperature": info["defaults"]["temperature"], "seed": seed}  # fmt: skip
        status, answer = server.post("/v1/chat/completions", body)
        assert status == 200, answer
        if answer["choices"][0]["finish_reason"] == "length":
            return Page(server, driver, seed)
    raise AssertionError("no seed in 1..199 gives a reply of LONG tokens")


def test_a_reply_streams_in_token_by_token(page: Page, tmp_path: Path) -> None:
    from selenium.webdriver.common.keys import Keys

    page.open()
    assert page.js("return document.title") == "bard · minigpt"
    assert "2 layers · 2 heads · 32-wide · 64-token context" in page.find("#shape").text
    page.settings(max_tokens=LONG, seed=page.seed)
    page.find("#settings-toggle").click()  # closed again
    page.find("#input").send_keys(
        "Shift+Enter", Keys.SHIFT, Keys.ENTER, Keys.SHIFT, "is a new line"
    )
    assert page.find("#input").get_attribute("value") == "Shift+Enter\nis a new line"
    assert page.replies() == 0
    page.find("#input").clear()
    page.throttle(PACE)
    try:
        page.send(PROMPT)
        seen, stop_enabled = [], []
        page.wait(lambda: page.reply() is not None)
        while (reply := page.reply())["busy"]:
            seen.append(reply["tokens"])
            stop_enabled.append(reply["stop"])
            time.sleep(0.02)
    finally:
        page.throttle(-1)
    # It grew while it streamed, and the Stop button was there for it.
    assert len({n for n in seen if n > 0}) >= 2, seen
    assert seen == sorted(seen) and all(stop_enabled)
    assert not page.find("#stop").is_enabled() and page.find("#send").is_enabled()
    assert (
        reply["tokens"] == LONG and reply["meta"] == f"{LONG} tokens · reached the max tokens limit"
    )
    assert all(0 < p <= 1 for p in reply["probs"])
    texts = page.js("return Array.from(document.querySelectorAll('#log .msg .text'))"
                    ".map(t => t.textContent)")  # fmt: skip
    assert texts[0] == PROMPT and len(texts) == 2
    # A token's tooltip: its probability and the five likeliest tokens there.
    page.hover("#log .msg.model .tok:not(.part)")
    tip = page.js(
        "const t = document.getElementById('tip');"
        "return {hidden: t.hidden, head: t.querySelector('.tip-head').textContent,"
        " rows: Array.from(t.querySelectorAll('tr')).map(r => r.textContent)}"
    )
    assert not tip["hidden"] and tip["head"].endswith("%"), tip
    assert len(tip["rows"]) == 5 and all(r.endswith("%") for r in tip["rows"]), tip
    shot = page.screenshot(tmp_path, "serve-chat", 1280, 800)
    page.hover("#input")
    assert page.js("return document.getElementById('tip').hidden")
    # Tokens take the keyboard focus too: the arrow keys step through them.
    page.js("document.querySelector('#log .msg.model .tok').focus()")
    page.driver.switch_to.active_element.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    focused = page.js(
        "const t = document.activeElement, tip = document.getElementById('tip');"
        "return [t.dataset.i, t.getAttribute('aria-describedby'), tip.hidden]"
    )
    assert focused == ["2", "tip", False]
    # The same page at a phone's width: one column, the open tooltip moved inside it.
    with page.sized(420, 800):
        tip_box = "const r = document.getElementById('tip').getBoundingClientRect();"
        assert page.js(tip_box + "return [r.left >= 0, r.right <= window.innerWidth]") == [
            True,
            True,
        ]
    page.screenshot(tmp_path, "serve-chat-narrow", 420, 800)
    page.check_clean()
    assert shot.exists()


def test_stop_keeps_the_partial_reply_and_regenerate_and_undo(page: Page) -> None:
    from selenium.webdriver.common.keys import Keys

    page.open()
    page.settings(max_tokens=1000, seed=page.seed)
    page.throttle(SLOW)
    try:
        page.send(PROMPT)
        page.wait(lambda: (r := page.reply()) is not None and r["tokens"] >= 3)
        assert page.find("#stop").is_enabled()
        page.find("#stop").click()
        stopped = page.wait_reply_done()
        # Regenerate asks again (the same seed: the same start), in place of that reply;
        # Escape stops it.
        page.find("#regenerate").click()
        page.wait(lambda: (r := page.reply()) is not None and r["busy"] and r["tokens"] >= 3)
        assert page.replies() == 1
        page.find("body").send_keys(Keys.ESCAPE)
        again = page.wait_reply_done()
    finally:
        page.throttle(-1)
    for reply in (stopped, again):
        assert "stopped" in reply["cls"].split() and reply["meta"].endswith("· stopped"), reply
        assert 3 <= reply["tokens"] < LONG, reply
    time.sleep(0.5)
    assert page.reply()["tokens"] == again["tokens"]  # nothing more arrives
    assert not page.find("#stop").is_enabled() and page.find("#send").is_enabled()
    assert page.replies() == 1
    assert page.js("return document.querySelectorAll('#log .msg.user').length") == 1
    # Undo removes the exchange and gives the message back to the box.
    page.find("#undo").click()
    assert page.js("return document.querySelectorAll('#log .msg').length") == 0
    assert page.find("#input").get_attribute("value") == PROMPT
    assert not page.find("#undo").is_enabled()
    page.check_clean()


def test_the_inside_panel_shows_attention_next_tokens_and_the_lens(
    page: Page, tmp_path: Path
) -> None:
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    page.open()
    page.settings(max_tokens=12, seed=page.seed)
    page.find("#settings-toggle").click()  # closed again
    page.send("To be, or not to be")
    page.wait_reply_done()
    page.find("#inside-toggle").click()
    page.wait(lambda: page.js("return document.querySelectorAll('#attn-tokens .atok').length"))
    record = page.response("/v1/minigpt/inside")
    tokens = page.js(ATTENTION_TOKENS)
    T = len(record["tokens"])
    assert "".join(record["tokens"]).startswith("To be, or not to be")
    assert tokens == [shown(t) for t in record["tokens"]]
    assert page.find("#inside-status").text == f"{T} tokens"

    def weights() -> list[str | None]:
        return page.js(
            "return Array.from(document.querySelectorAll('.atok'))"
            ".map(t => t.dataset.weight === undefined ? null : t.dataset.weight)"
        )

    def expected(layer: int, head: int, q: int) -> list[str | None]:
        row = record["attention"][layer][head][q]
        return [f"{w:.4f}" if k <= q else None for k, w in enumerate(row)]

    # At first the last token is pinned: what the head looks at to predict the next.
    layer, head = Select(page.find("#layer")), Select(page.find("#head"))
    assert [o.text for o in layer.options] == ["layer 1", "layer 2"]
    assert [o.text for o in head.options] == ["head 1", "head 2"]
    assert weights() == expected(0, 0, T - 1)
    # Hovering a token shows the head from there; another token moves it.
    page.hover('.atok[data-i="4"]')
    assert weights() == expected(0, 0, 4)
    assert page.js("return document.querySelector('.atok.from').dataset.i") == "4"
    page.hover('.atok[data-i="6"]')
    assert weights() == expected(0, 0, 6)
    # Another layer and head: their weights.
    layer.select_by_visible_text("layer 2")
    head.select_by_visible_text("head 2")
    page.hover('.atok[data-i="6"]')
    assert weights() == expected(1, 1, 6) != expected(0, 0, 6)
    assert page.js("return document.querySelector('#heads [aria-pressed=true]').textContent") == (
        "head 2"
    )
    page.find('#heads button[data-head="0"]').click()
    assert head.first_selected_option.text == "head 1"
    heat = page.js("const c = document.getElementById('heatmap'); return [c.width, c.height]")
    assert heat[0] == heat[1] >= T

    # The next-token bars follow the temperature slider: sharper when cold, flatter when hot.
    def bars() -> list[float]:
        return page.js("return Array.from(document.querySelectorAll('#bars .bar-row'))"
                       ".map(r => +r.dataset.p)")  # fmt: skip

    top = record["next"]["top"]
    temps = [t["temperature"] for t in record["next"]["temperatures"]]
    at = temps.index(0.8)  # the temperature setting's
    assert bars() == pytest.approx([t["probs"][at] for t in top], rel=1e-3)
    assert len(top) == 12 and page.find("#temp-out").text == "0.8"
    page.find("#temp").send_keys(Keys.HOME)
    assert page.find("#temp-out").text == "0.1"
    cold = bars()
    assert cold == pytest.approx([t["probs"][0] for t in top], rel=1e-3)
    page.find("#temp").send_keys(Keys.END)
    hot = bars()
    assert page.find("#temp-out").text == "2.0" and max(hot) < max(cold)
    entropy = record["next"]["temperatures"][-1]["entropy_bits"]
    assert f"entropy {entropy:.2f} bits" in page.find("#temp-facts").text

    # The lens: a row per layer (and the embedding), a column per last position.
    lens = record["lens"]["rows"]
    rows = page.js("return Array.from(document.querySelectorAll('#lens-table tbody tr'))"
                   ".map(r => r.querySelector('th').textContent)")  # fmt: skip
    assert rows == [r["name"] for r in lens] + ["came next"]
    cells = page.js("return document.querySelectorAll('#lens-table thead th').length")
    assert cells == 1 + min(8, T)
    page.hover('.atok[data-i="6"]')
    page.screenshot(tmp_path, "serve-inside", 1280, 1500)
    page.check_clean()


def test_markup_in_a_message_stays_text(page: Page) -> None:
    page.open()
    page.settings(max_tokens=6)
    page.send(MARKUP)
    page.wait_reply_done()
    page.find("#inside-toggle").click()
    page.wait(lambda: page.js("return document.querySelectorAll('#attn-tokens .atok').length"))
    user = page.js("return document.querySelector('#log .msg.user .text').textContent")
    assert user == MARKUP
    assert page.js("return document.images.length") == 0
    record = page.response("/v1/minigpt/inside")
    assert "".join(record["tokens"]).startswith(MARKUP)
    assert page.js(ATTENTION_TOKENS) == [shown(t) for t in record["tokens"]]
    page.check_clean()  # also: no alert, no request for "x"
