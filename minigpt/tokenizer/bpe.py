"""Byte-level BPE: training tiktoken-style mergeable ranks from text, and checking them.

`train_bpe` learns a byte-pair-encoding vocabulary the way GPT-2 did: split the text
into pre-tokens with a regex (so merges never cross a word/number/punctuation
boundary), then repeatedly merge the most frequent adjacent pair of tokens into a new
token. The result maps token bytes to a rank: the 256 single bytes get ranks 0..255,
and every learned merge gets the next rank in the order it was learned. That is
exactly the `mergeable_ranks` dict tiktoken encodes and decodes with.

Only training lives here; encoding and decoding are tiktoken's job (see tokenizer.py).

The merge loop is incremental: it keeps pair -> count, pair -> the words holding it,
and a max-heap of pairs keyed by count with lazy invalidation, so each merge only
touches the words that contain the merged pair instead of recounting the corpus.

`tokens_in_rank_order` checks ranks from anywhere (a file, a caller) before use.
"""

import heapq
import re
from collections import Counter, defaultdict

from minigpt.errors import TokenizerError

N_BYTES = 256
MAX_VOCAB_SIZE = 1_000_000  # far above any real vocabulary; guards against absurd files

Pair = tuple[int, int]


def _pretokenize(text: str, pattern: str) -> Counter[bytes]:
    """Split `text` with `pattern` and count each distinct pre-token (as UTF-8 bytes)."""
    try:
        splitter = re.compile(pattern)
    except re.error as e:
        raise TokenizerError(f"invalid BPE pre-tokenization pattern {pattern!r}: {e}") from e
    pieces = Counter(splitter.findall(text))
    counts: Counter[bytes] = Counter()
    for piece, n in pieces.items():
        if not isinstance(piece, str):
            raise TokenizerError(
                f"BPE pre-tokenization pattern {pattern!r} must not contain capturing groups"
            )
        # "surrogatepass" keeps a lone surrogate (possible in a Python str) trainable.
        counts[piece.encode("utf-8", "surrogatepass")] += n
    return counts


def _pair_key(pair: Pair, count: int, vocab: list[bytes]) -> tuple[int, bytes, bytes, Pair]:
    """Heap key: highest count first, ties broken by the pair's bytes (deterministic)."""
    return (-count, vocab[pair[0]], vocab[pair[1]], pair)


def _merge_word(word: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair` in `word`, left to right."""
    a, b = pair
    out: list[int] = []
    i, n = 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def train_bpe(text: str, vocab_size: int, pattern: str) -> dict[bytes, int]:
    """Learn up to `vocab_size` byte-level BPE tokens from `text`.

    `pattern` is a Python `re` regex splitting the text into pre-tokens; merges never
    cross pre-token boundaries. Returns tiktoken-style mergeable ranks (token bytes ->
    rank): single bytes are ranks 0..255, then the merges in the order learned.
    Training stops early, returning fewer than `vocab_size` tokens, when no pair of
    adjacent tokens occurs at least twice.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < N_BYTES:
        raise TokenizerError(f"BPE vocab_size must be an integer >= {N_BYTES}, got {vocab_size!r}")
    vocab: list[bytes] = [bytes([i]) for i in range(N_BYTES)]  # token id -> bytes
    ranks: dict[bytes, int] = {tok: i for i, tok in enumerate(vocab)}

    # One entry per distinct pre-token of 2+ bytes (a single byte has no pair to merge).
    words: list[list[int]] = []
    freqs: list[int] = []
    for piece, n in sorted(_pretokenize(text, pattern).items()):
        if len(piece) > 1:
            words.append(list(piece))
            freqs.append(n)

    pair_counts: defaultdict[Pair, int] = defaultdict(int)
    pair_words: defaultdict[Pair, set[int]] = defaultdict(set)
    for wi, (word, f) in enumerate(zip(words, freqs, strict=True)):
        for pair in zip(word, word[1:], strict=False):
            pair_counts[pair] += f
            pair_words[pair].add(wi)
    heap = [_pair_key(p, c, vocab) for p, c in pair_counts.items()]
    heapq.heapify(heap)

    while len(ranks) < vocab_size and heap:
        neg_count, _, _, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count != -neg_count:
            # Stale entry: the pair's count changed since it was pushed. A lower count
            # is re-queued here; a higher one was already pushed when it grew.
            if 0 < count < -neg_count:
                heapq.heappush(heap, _pair_key(pair, count, vocab))
            continue
        if count < 2:
            break  # the most frequent pair occurs once: nothing worth merging is left
        merged = vocab[pair[0]] + vocab[pair[1]]
        # Equal bytes must mean an equal id (e.g. "ab"+"c" and "a"+"bc" are both "abc"),
        # so a merge that rebuilds an existing token reuses it instead of adding a rank.
        new_id = ranks.get(merged)
        if new_id is None:
            new_id = len(vocab)
            vocab.append(merged)
            ranks[merged] = new_id

        delta = _merge_everywhere(pair, new_id, words, freqs, pair_words)
        _update_counts(delta, pair_counts, heap, vocab)
    return ranks


def _merge_everywhere(
    pair: Pair,
    new_id: int,
    words: list[list[int]],
    freqs: list[int],
    pair_words: defaultdict[Pair, set[int]],
) -> defaultdict[Pair, int]:
    """Merge `pair` into `new_id` in every word that holds it; how each pair's count
    changes (the words and their pair index are updated in place)."""
    delta: defaultdict[Pair, int] = defaultdict(int)
    for wi in pair_words.pop(pair):
        word = words[wi]
        new_word = _merge_word(word, pair, new_id)
        if len(new_word) == len(word):
            continue  # stale index: this word no longer holds the pair
        f = freqs[wi]
        for p in zip(word, word[1:], strict=False):
            delta[p] -= f
        for p in zip(new_word, new_word[1:], strict=False):
            delta[p] += f
            pair_words[p].add(wi)
        words[wi] = new_word
    return delta


def _update_counts(
    delta: dict[Pair, int],
    pair_counts: defaultdict[Pair, int],
    heap: list[tuple[int, bytes, bytes, Pair]],
    vocab: list[bytes],
) -> None:
    """Apply count changes; a pair whose count grew is queued again with its new count."""
    for p, d in delta.items():
        if d == 0:
            continue
        pair_counts[p] += d
        if pair_counts[p] <= 0:
            del pair_counts[p]
        elif d > 0:
            heapq.heappush(heap, _pair_key(p, pair_counts[p], vocab))


def tokens_in_rank_order(ranks: dict[bytes, int]) -> list[bytes]:
    """Check BPE ranks (ids 0..n-1, every single byte present) and list tokens by rank."""
    if not isinstance(ranks, dict) or not 0 < len(ranks) <= MAX_VOCAB_SIZE:
        raise TokenizerError(f"BPE ranks must be a dict of 1..{MAX_VOCAB_SIZE} tokens")
    tokens: list[bytes | None] = [None] * len(ranks)
    for tok, rank in ranks.items():
        if not isinstance(tok, bytes) or not tok:
            raise TokenizerError(f"BPE token {tok!r} is not a non-empty bytes value")
        if type(rank) is not int or not 0 <= rank < len(ranks) or tokens[rank] is not None:
            raise TokenizerError(f"BPE ranks must be 0..{len(ranks) - 1}, each used once")
        tokens[rank] = tok
    missing = [b for b in range(N_BYTES) if bytes([b]) not in ranks]
    if missing:
        raise TokenizerError(
            f"BPE ranks lack {len(missing)} single byte(s) (first: 0x{missing[0]:02x}); "
            "a byte-level BPE needs all 256 to encode any text"
        )
    return [t for t in tokens if t is not None]
