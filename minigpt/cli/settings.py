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
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import MISSING, Field, dataclass, fields
from typing import Annotated, Any, Literal, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Convert:
    """How a field's option is typed on the command line and turned into the field's value."""

    cli_type: Any
    convert: Callable[[Any], Any]


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
        converter = _default_converter(hint)
    cli_type = converter.cli_type
    if given_only:
        cli_type = cli_type | None
    shown = _shown(default) if given_only else default not in (None, ())
    info = typer.Option(*f.metadata["flags"], help=f.metadata["help"], show_default=shown)
    parameter = inspect.Parameter(
        f.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None if given_only or isinstance(default, tuple) else default,
        annotation=Annotated[cli_type, info],
    )
    return _Option(f.name, parameter, converter.convert)


def _default_converter(hint: Any) -> Convert:
    """A field's type as Typer parses it: a Literal as text, a tuple as a repeatable option."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return Convert(str, _same)
    if origin is tuple:
        return Convert(list[typing.get_args(hint)[0]] | None, _as_tuple)
    return Convert(hint, _same)


def _same(value: Any) -> Any:
    return value


def _as_tuple(value: list[Any]) -> tuple[Any, ...]:
    return tuple(value)


def _shown(default: Any) -> str | bool:
    """What the help shows as an option's default; nothing for an unset (None) one."""
    if default is None or default == ():
        return False
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)
