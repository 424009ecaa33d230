"""What the web page shows about the model and inside it, as JSON, from the inspection
library (`minigpt.inspect`): for a conversation (or a prompt), every head's attention
over its tokens, the next-token distribution at a range of temperatures, and the
logit lens (each layer's guess at the next token)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from minigpt.config import SampleConfig
from minigpt.errors import ConfigError, TokenizerError
from minigpt.generation.chat import ChatFormat, chat_stop, conversation_ids, role_ids
from minigpt.inspect.attention import attention_lists
from minigpt.inspect.forward import trace_ids
from minigpt.inspect.lens import logit_lens
from minigpt.inspect.nextdist import next_after_ids
from minigpt.inspect.records import lens_record, next_record
from minigpt.serve.protocol import ApiError, Reader
from minigpt.serve.service import Served

TEMPERATURES = [round(0.1 * i, 1) for i in range(1, 21)]  # the page's slider: 0.1 .. 2.0
SHOWN = 12  # likeliest next tokens shown
DECIMALS = 4  # attention weights are rounded: the page draws them, it does not add them
# Tokens shown, the newest: every head's weights grow with their square (12 layers x 12
# heads x 96^2 is 1.3M numbers), and a page of more could not show them anyway.
MOST_TOKENS = 96


def model_info(served: Served) -> dict[str, Any]:
    """The model's name, shape and chat format, for the page's header and settings."""
    tokenizer = served.tokenizer
    config = served.checkpoint.model.config
    return {
        "model": served.name,
        "config": asdict(config),
        "tokenizer": tokenizer.spec(),
        "role_tokens": bool(role_ids(tokenizer)),
        "chat_stop": list(chat_stop(tokenizer)),
        "defaults": {"temperature": SampleConfig.temperature, "max_tokens": 200},
    }


def inside_record(served: Served, body: object) -> dict[str, Any]:
    """The inside views for {"messages": [...]} (as the chat endpoint builds its
    prompt, the last reply included) or {"prompt": "text"}, over its last MOST_TOKENS
    tokens (at most block_size)."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model, tokenizer = served.checkpoint.model, served.tokenizer
    block = model.config.block_size
    read = Reader(body)
    try:
        if "messages" in body:
            chat = ChatFormat.of(tokenizer, chat_stop(tokenizer, read.stop()))
            system, turns = read.messages()
            ids = conversation_ids(chat, system, turns, block)
        else:
            prompt = read.get("prompt")
            if not isinstance(prompt, str) or not prompt:
                raise ApiError(400, "give 'messages' or a non-empty 'prompt'", param="prompt")
            ids = tokenizer.encode(prompt)
    except (ConfigError, TokenizerError) as e:
        raise ApiError(400, f"the text cannot be encoded: {e}") from e
    read.check_all_read()
    ids = ids[-min(block, MOST_TOKENS) :]
    traced = trace_ids(model, tokenizer, ids)
    attention = [
        [[[round(w, DECIMALS) for w in row] for row in head] for head in layer]
        for layer in attention_lists(traced)
    ]
    config = SampleConfig()
    view = next_after_ids(model, tokenizer, ids, TEMPERATURES, config, show=SHOWN)
    return {
        "tokens": traced.labels,
        "ids": ids,
        "attention": attention,
        "next": next_record(view, config),
        "lens": lens_record(traced, logit_lens(model, tokenizer, traced, k=1)),
    }
