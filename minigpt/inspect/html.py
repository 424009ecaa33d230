"""`minigpt inspect` as self-contained HTML pages: one file each, with its CSS, its
script and its data inline, that a browser opens with no network at all.

- `attention_html`: the attention widget alone (layer and head selectors, the heatmap
  of one head, the tokens with lines to where a head looks, every head of the layer);
- `report_html`: every view on one page behind a table of contents: weights,
  attention, positions, embeddings, logit lens, next token, surprise.

The numbers come from the `minigpt.inspect` functions; the page only renders them.
The attention data is `{"tokens": labels, "attention": attention_lists(traced)}` in a
`<script type="application/json" id="data">` block, the numbers `--json` prints.
Token labels come from a model and may hold anything ("</script>" included): in JSON
blocks "<", ">" and "&" are written as \\u escapes, in markup every text is escaped,
and the script inserts text only through `textContent`.
"""

from __future__ import annotations

import json
from html import escape
from importlib import resources
from typing import Any

from minigpt.config import SampleConfig
from minigpt.inspect.forward import Traced, trace_prompt
from minigpt.inspect.html_sections import (
    embeddings_section,
    legend,
    lens_section,
    next_section,
    positions_section,
    surprise_section,
    weights_section,
)
from minigpt.inspect.lens import logit_lens
from minigpt.inspect.nextdist import next_distribution
from minigpt.inspect.records import attention_record
from minigpt.inspect.weights import weight_report
from minigpt.model import GPT
from minigpt.tokenizer.encodings import Tokenizer

TEMPERATURES = (0.5, 1.0, 2.0)
SECTIONS = (
    ("weights", "Weights"),
    ("attention", "Attention"),
    ("positions", "Positions"),
    ("embeddings", "Embeddings"),
    ("lens", "Logit lens"),
    ("next", "Next token"),
    ("surprise", "Surprise"),
)
# No request can leave the page: everything it needs is inline.
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def script_json(value: Any) -> str:
    """`value` as JSON safe inside a <script> element: "<", ">" and "&" (and the two
    line separators JavaScript once treated as newlines) as \\u escapes, so no text
    can close the element or open a comment."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def attention_html(traced: Traced, title: str) -> str:
    """One page with the attention widget for `traced`."""
    n_layer, n_head = len(traced.trace.attention), traced.trace.attention[0].size(0)
    body = (
        f"<h1>{escape(title)}</h1>\n"
        f'<p class="sub">{len(traced.ids)} tokens, {n_layer} layers x {n_head} heads. '
        "Rows are queries (the token looking), columns keys (the token looked at); a "
        "query never sees a later key. Hover or click a token to see where the head "
        "looks from it.</p>\n" + _attention_widget()
    )
    return _page(title, body, {"data": attention_record(traced)})


def report_html(model: GPT, tokenizer: Tokenizer, prompt: str, title: str) -> str:
    """One page with every view of `model` on `prompt`, linked by a table of contents."""
    traced = trace_prompt(model, tokenizer, prompt)
    report = weight_report(model)
    heatmaps: dict[str, Any] = {}
    bodies = {
        "weights": weights_section(report),
        "attention": _attention_intro() + _attention_widget(),
        "positions": positions_section(model, tokenizer, prompt, heatmaps),
        "embeddings": embeddings_section(model, tokenizer, traced),
        "lens": lens_section(logit_lens(model, tokenizer, traced), traced),
        "next": next_section(
            next_distribution(model, tokenizer, prompt, list(TEMPERATURES), SampleConfig())
        ),
        "surprise": surprise_section(model, tokenizer, prompt),
    }
    c = model.config
    toc = "".join(f'<li><a href="#{key}">{name}</a></li>' for key, name in SECTIONS)
    sections = "".join(
        f'<section id="{key}">\n<h2>{name}</h2>\n{bodies[key]}\n</section>\n'
        for key, name in SECTIONS
    )
    kv = f" ({c.kv_heads} key/value)" if c.kv_heads != c.n_head else ""
    body = (
        f"<h1>{escape(title)}</h1>\n"
        f'<p class="sub">{report.total:,} parameters: {c.n_layer} layers, {c.n_head} heads{kv}, '
        f"width {c.n_embd}, context {c.block_size}, {escape(c.pos_encoding)} positions, "
        f"{escape(c.norm)}, {escape(c.mlp)} MLP, vocabulary {tokenizer.vocab_size} "
        f"({escape(tokenizer.kind)}), embeddings {'tied' if c.tie_embeddings else 'untied'}. "
        f"Prompt: {len(traced.ids)} tokens.</p>\n"
        f'<p class="mono">{escape(prompt)}</p>\n'
        f'<nav id="toc"><strong>Contents</strong><ol>{toc}</ol></nav>\n{sections}'
    )
    return _page(title, body, {"data": attention_record(traced), "report": {"heatmaps": heatmaps}})


# -------------------------------------------------------------------------------------
# The page around the views.


def _asset(name: str) -> str:
    """page.css or page.js, shipped next to this module."""
    return resources.files("minigpt.inspect").joinpath(name).read_text(encoding="utf-8")


def _page(title: str, body: str, blocks: dict[str, Any]) -> str:
    data = "".join(
        f'<script type="application/json" id="{key}">{script_json(value)}</script>\n'
        for key, value in blocks.items()
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{escape(title)}</title>\n"
        f"<style>\n{_asset('page.css')}</style>\n</head>\n<body>\n"
        f"{body}\n{data}<script>\n{_asset('page.js')}</script>\n</body>\n</html>\n"
    )


# -------------------------------------------------------------------------------------
# Sections.


def _attention_intro() -> str:
    return (
        '<p class="note">Each head\'s weights: softmax(Q K<sup>T</sup> / sqrt(d<sub>k</sub>) '
        "+ causal mask), rows are queries, columns keys. Hover or click a token (or a "
        "heatmap row) to see where the head looks from it; click a small heatmap to "
        "select its head.</p>\n"
    )


def _attention_widget() -> str:
    return (
        '<div class="attn" id="attention-widget">\n'
        '<div class="controls"><label>Layer <select id="layer"></select></label>'
        '<label>Head <select id="head"></select></label>'
        f"{legend('blues', '0', '1')}"
        '<span id="readout" class="readout"></span></div>\n'
        '<div class="attn-main">\n'
        '<div class="panel"><h3>Heatmap of the head</h3><div id="heatmap" class="heatmap">'
        "</div></div>\n"
        '<div class="panel"><h3>Where it looks from each token</h3>'
        '<div id="tokenview" class="tokenview"></div></div>\n</div>\n'
        '<h3>All heads of the layer</h3><div id="overview" class="overview"></div>\n</div>\n'
    )
