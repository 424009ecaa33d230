"""Tokenizers: text <-> token ids.

- `encodings`: the `Tokenizer` interface and its three kinds (char, minigpt's own
  byte-level BPE, tiktoken's pretrained encodings);
- `bpe`: learning byte-level BPE merges from a text;
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

__all__ = [
    "ENDOFTEXT",
    "BPETokenizer",
    "CharTokenizer",
    "TiktokenTokenizer",
    "Tokenizer",
    "load_tokenizer",
    "save_tokenizer",
    "tokenizer_from_json",
    "train_tokenizer",
]
