"""Typed settings fields: each carries its command-line flag and help, and its JSON
type is checked when a config is built.

`setting(default, help, flag)` declares a config field once: the dataclass default,
the help text and the flag the command line shows for it (`minigpt.cli.options` builds
the Typer options from these). `check_field_types` rejects values whose JSON type does
not match the field's annotation (`true` for an int, a string for a float), and
`from_dict` builds a config from a JSON object with exactly its fields.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import asdict, field, fields
from typing import Any, Literal, TypeVar

from minigpt.errors import ConfigError

T = TypeVar("T")


def setting(default: Any, help: str, *flags: str, unset: str | None = None) -> Any:
    """A config field whose default, help text and command-line flags (the first is
    the long one; "--x/--no-x" for a switch) are declared here and nowhere else.
    `unset` says what a default of None (or no values) means, as help shows it."""
    return field(default=default, metadata={"help": help, "flags": flags, "unset": unset})


def check_field_types(obj: Any) -> None:
    """Reject values whose JSON type does not match the field (e.g. `true` for an int)."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        if not _matches(value, hints[f.name]):
            raise ConfigError(
                f"{type(obj).__name__}.{f.name} = {value!r} has the wrong type; "
                f"expected {_describe(hints[f.name])}"
            )


def is_number(value: Any) -> bool:
    """A JSON number: an int or a float, not a bool (True is an int in Python)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    """A JSON integer: an int that is not a bool (True is an int in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return is_int(value)
    if hint is float:
        return is_number(value)  # "lr": 1 means 1.0 in JSON
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:  # tuple[X, ...]: a JSON list of X
        (item, _) = typing.get_args(hint)
        return isinstance(value, tuple) and all(_matches(v, item) for v in value)
    return False


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    return "null" if hint is type(None) else hint.__name__


def require(ok: bool, message: str) -> None:
    """Raise `ConfigError(message)` unless `ok`. Not an assert: it survives `python -O`."""
    if not ok:
        raise ConfigError(message)


def require_in(name: str, value: int, low: int, high: int, note: str = "") -> None:
    """An integer setting within [low, high]; the message names both bounds."""
    require(low <= value <= high, f"{name} must be from {low:,} to {high:,}{note and ' ' + note}")


def require_finite(name: str, value: float) -> None:
    require(math.isfinite(value), f"{name} must be a finite number, got {value!r}")


def from_dict(cls: type[T], data: Any, *, where: str = "config") -> T:
    """Build dataclass `cls` from a JSON object, requiring exactly its fields."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object for {cls.__name__}")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    missing = sorted(names - set(data))
    if unknown:
        raise ConfigError(f"{where}: unknown {cls.__name__} keys {unknown}")
    if missing:
        raise ConfigError(f"{where}: missing {cls.__name__} keys {missing}")
    return cls(**data)


def to_dict(obj: Any) -> dict[str, Any]:
    """The JSON-native dictionary of a config dataclass."""
    return asdict(obj)


def flag_of(cls: type, name: str) -> str:
    """The command-line flag of a settings field (`--n-layer`; `--tie` of `--tie/--no-tie`)."""
    flags = next(f.metadata.get("flags") for f in fields(cls) if f.name == name)
    return flags[0].split("/")[0] if flags else name
