"""Command-line options made from config fields, so that each setting has one source.

A config field declared with `minigpt.schema.setting` carries its default, its help
text and its flags. `with_settings(param, Config)` decorates a command function whose
parameter `param` stands for a whole config: in the signature Typer sees, that
parameter is replaced by one option per such field (flags, help and default taken
from the field), and the function is called with the config built from them. With
`given_only`, every option defaults to None and the function gets a dict of the
options the user gave instead (for settings that overlay a preset or a resumed run).
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import MISSING, Field, dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from minigpt.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Convert:
    """How a field's option is typed on the command line and turned into the field's value."""

    cli_type: Any
    convert: Callable[[Any], Any]
    metavar: str = ""  # how help names the value; "" to name it from the field's type


@dataclass(frozen=True)
class _Option:
    name: str
    parameter: inspect.Parameter
    convert: Callable[[Any], Any]


def with_settings(
    param: str,
    cls: type,
    *,
    exclude: Collection[str] = (),
    defaults: Mapping[str, Any] | None = None,
    given_only: bool = False,
    converters: Mapping[str, Convert] | None = None,
) -> Callable[[F], F]:
    """Replace the command's parameter `param` by the options of `cls`'s settings.

    `defaults` overrides a field's default for this command (chat's shorter replies);
    with `given_only` it is only what the help shows for an unset option (a preset's
    value). `converters` type an option differently from its field (a duration as text).
    """
    options = [
        _option(f, hint, defaults or {}, given_only, (converters or {}).get(f.name))
        for f, hint in _settings(cls, exclude)
    ]

    def decorate(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        if param not in signature.parameters:
            raise TypeError(f"{func.__name__} has no parameter {param!r}")
        params: list[inspect.Parameter] = []
        for p in signature.parameters.values():
            if p.name == param:
                params += [o.parameter for o in options]
            else:
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            values = {o.name: kwargs.pop(o.name) for o in options}
            given = {  # None: not given, the default
                o.name: o.convert(values[o.name]) for o in options if values[o.name] is not None
            }
            kwargs[param] = given if given_only else cls(**given)
            return func(**kwargs)

        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command  # type: ignore[return-value]

    return decorate


def _settings(cls: type, exclude: Collection[str]) -> list[tuple[Field[Any], Any]]:
    """The fields of `cls` that carry flags, with their resolved type hints."""
    hints = typing.get_type_hints(cls)
    unknown = set(exclude) - {f.name for f in fields(cls)}
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {sorted(unknown)}")
    return [
        (f, hints[f.name]) for f in fields(cls) if f.metadata.get("flags") and f.name not in exclude
    ]


def _option(
    f: Field[Any],
    hint: Any,
    defaults: Mapping[str, Any],
    given_only: bool,
    converter: Convert | None,
) -> _Option:
    default = defaults.get(f.name, f.default if f.default is not MISSING else None)
    if converter is None:
        converter = _default_converter(hint, f.metadata["flags"][0])
    cli_type = converter.cli_type
    if given_only:
        cli_type = cli_type | None
    shown = _shown(default, f.metadata.get("unset"), f.metadata["flags"][0])
    metavar = converter.metavar or _metavar(hint)
    info = option(f.metadata["help"], *f.metadata["flags"], default=shown, metavar=metavar)
    parameter = inspect.Parameter(
        f.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None if given_only or isinstance(default, tuple) else default,
        annotation=Annotated[cli_type, info],
    )
    return _Option(f.name, parameter, converter.convert)


def _default_converter(hint: Any, flag: str) -> Convert:
    """A field's type as Typer parses it: a Literal as text checked against its choices,
    a tuple as a repeatable option."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return Convert(str, functools.partial(_one_of, flag, typing.get_args(hint)))
    if origin is tuple:
        return Convert(list[typing.get_args(hint)[0]] | None, _as_tuple)
    return Convert(hint, _same)


def _one_of(flag: str, choices: tuple[str, ...], value: str) -> str:
    if value not in choices:
        raise ConfigError(f"{flag} {value!r} is not one of {', '.join(choices)}")
    return value


def _same(value: Any) -> Any:
    return value


def _as_tuple(value: list[Any]) -> tuple[Any, ...]:
    return tuple(value)


def option(help: str, *flags: str, default: str, metavar: str = "") -> Any:
    """A Typer option whose help ends with its default, "[default: X]" (escaped, so that
    rich shows it), and whose value is named `metavar` ("" for a flag without a value)."""
    return typer.Option(
        *flags, help=f"{help} \\[default: {default}]", show_default=False, metavar=metavar
    )


def _shown(default: Any, unset: str | None, flag: str) -> str:
    """What the help shows as an option's default: a switch as the flag that is on, an
    unset (None) one as what that means."""
    if default is None or default == ():
        return unset or "none"
    if isinstance(default, bool):
        on, _, off = flag.partition("/")
        if not off:
            return "on" if default else "off"
        return on if default else off
    return str(default)


def _metavar(hint: Any) -> str:
    """How help names an option's value ("" for a switch)."""
    if hint is bool:
        return ""
    if typing.get_origin(hint) is Literal:
        return "NAME"  # the help text lists the choices
    args = [a for a in typing.get_args(hint) if a not in (type(None), Ellipsis)]
    if args:  # X | None, tuple[X, ...]
        return _metavar(args[0])
    return {int: "INT", float: "NUMBER", Path: "PATH"}.get(hint, "TEXT")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as "90", "90s", "3m", "1h30m" or "2.5m"."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    rest = text.strip().lower()
    total, seen = 0.0, False
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        number, unit = rest[:i], rest[i : i + 1] or "s"
        if not number or unit not in units:
            raise ConfigError(f"cannot read the duration {text!r}; write e.g. 90s, 3m or 1h30m")
        try:
            total += float(number) * units[unit]
        except ValueError as e:
            raise ConfigError(f"cannot read the duration {text!r}; write e.g. 90s or 3m") from e
        rest, seen = rest[i + 1 :], True
    if not seen or not math.isfinite(total) or total <= 0:
        raise ConfigError(f"the duration {text!r} must be positive, e.g. 90s or 3m")
    return total
