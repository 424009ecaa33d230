"""Tokenizers: text <-> token ids.

- `encodings`: the `Tokenizer` interface and its three kinds (char, minigpt's own
  byte-level BPE, tiktoken's pretrained encodings);
- `bpe`: learning byte-level BPE merges from a text;
- `hf`: importing a Hugging Face byte-level BPE tokenizer exactly (`tokenizer_from_hf`),
  as tiktoken's gpt2 or an `hf_bpe.HFBPETokenizer` that keeps the model's ids; the
  ranks that make tiktoken merge as Hugging Face does come from `hf_ranks`;
- `files`: building a tokenizer of a kind, and tokenizer.json (validated, atomic);
- `pieces`: how each token reads: its whole characters, or the bytes of a character
  split across tokens (`<EC><96>`), never U+FFFD.
"""

from minigpt.tokenizer.encodings import (
    ENDOFTEXT,
    BPETokenizer,
    CharTokenizer,
    TiktokenTokenizer,
    Tokenizer,
)
from minigpt.tokenizer.files import (
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_json,
    train_tokenizer,
)
from minigpt.tokenizer.hf import tokenizer_from_hf
from minigpt.tokenizer.hf_bpe import HFBPETokenizer

__all__ = [
    "ENDOFTEXT",
    "BPETokenizer",
    "CharTokenizer",
    "HFBPETokenizer",
    "TiktokenTokenizer",
    "Tokenizer",
    "load_tokenizer",
    "save_tokenizer",
    "tokenizer_from_hf",
    "tokenizer_from_json",
    "train_tokenizer",
]
