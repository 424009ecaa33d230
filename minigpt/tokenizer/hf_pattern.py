"""Hugging Face pre-tokenizers as one tiktoken regex: ByteLevel alone (GPT-2's regex), a
regex Split then ByteLevel (Llama 3, Qwen), Digits then ByteLevel (StarCoder, SmolLM2),
rewritten as one equivalent regex; anything else is refused (`refuse`: the one line
every unreproducible part of a tokenizer is refused with)."""

from pathlib import Path
from typing import Any

from minigpt.errors import TokenizerError
from minigpt.tokenizer.encodings import GPT2_PATTERN

# Digits then ByteLevel: numbers are cut out first (each digit alone, or each run of
# them), then GPT-2's regex splits the text between them, where the end of a stretch
# counts as the end of the text. As one regex: no " ?\p{N}+", a number alternative,
# and "\s+(?!\S)" allowed before a number. Digits uses Rust's char::is_numeric, whose
# Unicode tables know 13 numerals the regex engines' do not yet (Unicode 17): they are
# named here, so the pattern gives the tokenizers library's pieces for every code point.
NEW_NUMERALS = r"\x{11DE0}-\x{11DE9}\x{16FF4}-\x{16FF6}"
_DIGITS_BASE = (
    rf"'s|'t|'re|'ve|'m|'ll|'d| ?\p{{L}}+| ?[^\s\p{{L}}\p{{N}}{NEW_NUMERALS}]+"
    rf"|\s+(?![^\s\p{{N}}{NEW_NUMERALS}])|\s+"
)
DIGITS_PATTERNS = {
    True: rf"{_DIGITS_BASE}|[\p{{N}}{NEW_NUMERALS}]",
    # A run of numerals, which GPT-2's regex (tables without the 13) then splits again.
    False: rf"{_DIGITS_BASE}|\p{{N}}+|[{NEW_NUMERALS}]+",
}


def refuse(where: object, what: str) -> TokenizerError:
    return TokenizerError(
        f"cannot import the tokenizer {where}: {what} cannot be reproduced exactly by a "
        "tiktoken byte-level BPE, and minigpt does not approximate"
    )


def component_types(d: Any) -> list[str]:
    """The types of a component, or of the members of a Sequence of them."""
    if not isinstance(d, dict):
        return []
    if d.get("type") == "Sequence":
        members = next((v for k, v in d.items() if k != "type" and isinstance(v, list)), [])
        return [t for m in members for t in component_types(m)]
    return [str(d.get("type"))]


def describe(d: Any) -> str:
    return "+".join(component_types(d)) or ("missing" if d is None else "malformed")


def pretokenizer_pattern(pre: Any, path: Path) -> str:
    """The pre-tokenization regex of a ByteLevel pre-tokenizer, alone or after a Split."""
    members = pre.get("pretokenizers") if isinstance(pre, dict) else None
    members = members if isinstance(members, list) else [pre]  # a Sequence, or one
    types = [describe(m) for m in members]
    if types == ["ByteLevel"]:
        _check_byte_level(members[0], path, use_regex=True)
        return GPT2_PATTERN  # the regex ByteLevel splits with, the same as tiktoken's gpt2
    if types == ["Digits", "ByteLevel"]:  # StarCoder, SmolLM2
        _check_byte_level(members[1], path, use_regex=True)
        return DIGITS_PATTERNS[bool(members[0].get("individual_digits", False))]
    if types == ["Split", "ByteLevel"]:
        split, byte_level = members
        _check_byte_level(byte_level, path, use_regex=False)
        on = split.get("pattern")
        regex = on.get("Regex") if isinstance(on, dict) else None
        if not isinstance(regex, str) or split.get("invert"):
            raise refuse(
                path,
                f"a Split pre-tokenizer on {on!r:.60} (invert={split.get('invert')!r}), "
                "not on a regex",
            )
        if split.get("behavior") != "Isolated":
            raise refuse(
                path,
                f"a Split pre-tokenizer with behavior {split.get('behavior')!r:.30}"
                " (tiktoken's pattern isolates each match)",
            )
        return regex
    if "Metaspace" in component_types(pre):
        raise refuse(
            path,
            "a Metaspace pre-tokenizer (SentencePiece-style '▁' for spaces, "
            "as in Llama 2 or TinyLlama)",
        )
    raise refuse(
        path,
        f"a {describe(pre)} pre-tokenizer (expected ByteLevel, a regex Split then ByteLevel, "
        "or Digits then ByteLevel)",
    )


def _check_byte_level(d: dict[str, Any], path: Path, use_regex: bool) -> None:
    if d.get("add_prefix_space"):
        raise refuse(
            path,
            "a ByteLevel pre-tokenizer with add_prefix_space=True (a space "
            "is put before the text, so encode(a + b) != encode(a) + encode(b))",
        )
    if d.get("use_regex", True) != use_regex:
        what = (
            "splitting with GPT-2's regex after a Split"
            if use_regex is False
            else ("without its regex (the whole text as one piece)")
        )
        raise refuse(path, f"a ByteLevel pre-tokenizer {what}")
