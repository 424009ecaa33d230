"""Weights and settings to and from Hugging Face transformers layouts: GPT-2 and Llama.

This package owns the mapping between minigpt's names and shapes and those of
`GPT2LMHeadModel` and `LlamaForCausalLM`. It works on plain data only: config
dictionaries (the contents of a `config.json`, or `PretrainedConfig.to_dict()`) and
state dicts of tensors. It never imports transformers; callers that have it build
`transformers.GPT2Config(**config_to_gpt2(cfg))` and the like themselves.

The two architectures are minigpt configurations, one module each: `gpt2` and `llama`
hold an architecture's defaults, config mapping and tensor rules; `common` holds the
machinery they share.

Anything the other side cannot represent raises `ConfigError` (a setting) or
`CheckpointError` (a tensor) naming it; nothing is silently dropped or approximated.
"""

from __future__ import annotations

from minigpt.convert.common import Rule, minigpt_shapes
from minigpt.convert.gpt2 import (
    GPT2_ACTIVATIONS,
    GPT2_BUFFERS,
    GPT2_DEFAULTS,
    config_from_gpt2,
    config_to_gpt2,
    gpt2_rules,
    state_dict_from_gpt2,
    state_dict_to_gpt2,
)
from minigpt.convert.llama import (
    LLAMA_ACTIVATIONS,
    LLAMA_BUFFERS,
    LLAMA_DEFAULTS,
    config_from_llama,
    config_to_llama,
    llama_rules,
    state_dict_from_llama,
    state_dict_to_llama,
)

__all__ = [
    "GPT2_ACTIVATIONS",
    "GPT2_BUFFERS",
    "GPT2_DEFAULTS",
    "LLAMA_ACTIVATIONS",
    "LLAMA_BUFFERS",
    "LLAMA_DEFAULTS",
    "Rule",
    "config_from_gpt2",
    "config_from_llama",
    "config_to_gpt2",
    "config_to_llama",
    "gpt2_rules",
    "llama_rules",
    "minigpt_shapes",
    "state_dict_from_gpt2",
    "state_dict_from_llama",
    "state_dict_to_gpt2",
    "state_dict_to_llama",
]
