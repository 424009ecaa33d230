"""From the user's text to batches.

- `corpus`: reading a text file of any size in bounded memory, in whole segments;
- `documents`: a directory of `*.txt` files as one corpus (order, end-of-text, sha256);
- `dataset`: text file -> dataset directory (train.bin, val.bin, meta.json,
  tokenizer.json), cached by content hash and tokenizer settings;
- `batches`: random training windows and in-order evaluation windows;
- `download`: public corpora (tiny shakespeare), sha256-checked.
"""
