"""Ranks for tiktoken that reproduce a Hugging Face BPE's merges exactly, or a refusal.

The two libraries merge differently. Hugging Face (`tokenizers`) keys its merges by
*pair*: in a pre-token it repeatedly merges the adjacent pair (a, b) that comes first
in the merges list (the leftmost on a tie). tiktoken keys them by the *merged token*:
it repeatedly merges the adjacent pair whose concatenation has the lowest rank (the
leftmost on a tie), and a whole pre-token that is itself a token is returned as is.

One fact makes the two agree. If Hugging Face ever holds the pieces x, y side by side
in some pre-token, it reaches exactly [x, y] when it encodes the bytes x + y alone:
the merges inside that span happened in the same order, since each was the first in
the list among the pairs present (the "span argument"; tiktoken's algorithm has the
same property). So every token t that Hugging Face builds is built by one merge only,
the last step of encoding t alone, its canonical merge; its other merges in the list
never fire. `derive_ranks` encodes every token alone with Hugging Face's algorithm:

- a token that comes out whole is ranked by the position of its canonical merge. This
  orders tokens exactly as Hugging Face orders the pairs it can meet, so at the first
  step where the two libraries would choose differently, tiktoken must be merging a
  pair (x, y) that Hugging Face has no merge for, into a token x + y. By the span
  argument Hugging Face stops at [x, y] when encoding x + y alone: x + y is not one of
  the tokens it builds, so it is not ranked, and that step cannot happen.
- a token that does not come out whole is never produced by merging. Without
  `ignore_merges` it becomes decode-only (an id the model has that encoding never
  gives). With it, Hugging Face returns a pre-token that is in the vocabulary as is,
  like tiktoken, so the token must be ranked (after the others), and then the step
  above can happen: tiktoken could build it inside a longer pre-token. Again by the
  span argument that happens somewhere only if it happens when encoding the token
  alone, so each such token is encoded by both algorithms in lockstep, and a
  difference is refused, naming the token.
"""

from functools import cache

from minigpt.errors import TokenizerError

Pair = tuple[bytes, bytes]


@cache
def byte_level_decoder() -> dict[str, int]:
    """GPT-2's `bytes_to_unicode`, inverted: the character spelling each byte -> the byte.

    Printable Latin-1 bytes spell themselves; the other 68 (controls, space, ...) are
    given the characters from U+0100 on, in byte order, so that no token has a space."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    others = [b for b in range(256) if b not in printable]
    chars = {b: chr(b) for b in printable} | {b: chr(256 + n) for n, b in enumerate(others)}
    return {c: b for b, c in chars.items()}


def derive_ranks(
    vocab: dict[bytes, int], merges: list[Pair], ignore_merges: bool, where: str = "tokenizer"
) -> tuple[list[tuple[bytes, int]], list[tuple[bytes, int]]]:
    """tiktoken's ranked tokens (bytes, id) in rank order, and the decode-only tokens.

    `vocab` holds the ordinary tokens; `merges` the merge list in order. Raises
    TokenizerError when no ranking reproduces the merges."""
    # Hugging Face builds its merge map by inserting the list in order: a pair listed
    # twice keeps its later position.
    priority = {pair: n for n, pair in enumerate(merges)}
    canonical: dict[bytes, int] = {}
    unbuilt: list[bytes] = []
    # A byte without a token of its own is dropped by Hugging Face (and refused in any
    # text by HFBPETokenizer): a token holding one only decodes.
    absent = bytes(b for b in range(256) if bytes([b]) not in vocab)
    unreachable = {t for t in vocab if len(t) > 1 and len(t.translate(None, absent)) < len(t)}
    for token in vocab:
        if len(token) > 1 and token not in unreachable:
            parts, last = _hf_encode(token, priority)
            if len(parts) == 1:
                canonical[token] = last
            else:
                unbuilt.append(token)
    singles = sorted((t for t in vocab if len(t) == 1), key=vocab.__getitem__)
    order = singles + sorted(canonical, key=canonical.__getitem__)
    decode_only = sorted(unreachable, key=vocab.__getitem__)
    if ignore_merges:
        order += sorted(unbuilt, key=vocab.__getitem__)
    else:
        decode_only = sorted(decode_only + unbuilt, key=vocab.__getitem__)
    rank = {token: n for n, token in enumerate(order)}
    for token in unbuilt if ignore_merges else ():
        if _has_unmerged_split(token, rank, priority):
            _check_lockstep(token, rank, priority, vocab, where)
    return [(t, vocab[t]) for t in order], [(t, vocab[t]) for t in decode_only]


def _hf_encode(word: bytes, priority: dict[Pair, int]) -> tuple[list[bytes], int]:
    """Hugging Face's BPE on one pre-token: the pieces, and the position of the last merge."""
    parts = [word[i : i + 1] for i in range(len(word))]
    last = -1
    while len(parts) > 1:
        best, at = -1, -1
        for i in range(len(parts) - 1):
            p = priority.get((parts[i], parts[i + 1]))
            if p is not None and (at < 0 or p < best):
                best, at = p, i
        if at < 0:
            break
        parts[at : at + 2] = [parts[at] + parts[at + 1]]
        last = best
    return parts, last


def _has_unmerged_split(token: bytes, rank: dict[bytes, int], priority: dict[Pair, int]) -> bool:
    """Whether token = x + y for tokens x, y that Hugging Face has no merge for."""
    for i in range(1, len(token)):
        x, y = token[:i], token[i:]
        if x in rank and y in rank and (x, y) not in priority:
            return True
    return False


def _check_lockstep(
    token: bytes,
    rank: dict[bytes, int],
    priority: dict[Pair, int],
    vocab: dict[bytes, int],
    where: str,
) -> None:
    """Encode `token` alone with both algorithms side by side; refuse if they part."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 1:
        hf_at = tt_at = -1
        hf_best = tt_best = 0
        for i in range(len(parts) - 1):
            a, b = parts[i], parts[i + 1]
            p = priority.get((a, b))
            if p is not None and (hf_at < 0 or p < hf_best):
                hf_best, hf_at = p, i
            r = rank.get(a + b)
            if r is not None and (tt_at < 0 or r < tt_best):
                tt_best, tt_at = r, i
        if hf_at != tt_at:
            hf, tt = (
                f"merges {parts[at]!r} + {parts[at + 1]!r}" if at >= 0 else "stops"
                for at in (hf_at, tt_at)
            )
            raise TokenizerError(
                f"cannot import the tokenizer {where}: encoding the token {token!r} "
                f"(id {vocab[token]}, which only ignore_merges gives), Hugging Face {hf} where "
                f"tiktoken {tt}; no ranking of whole tokens reproduces these merges, and "
                "minigpt does not approximate"
            )
        if hf_at < 0:
            return
        parts[hf_at : hf_at + 2] = [parts[hf_at] + parts[hf_at + 1]]
