"""Constructor arguments checked against their own annotations: each rule is written once, in the signature.

``Annotated[int, AtLeast(1)]`` must be an integer >= 1 (a bool is no integer), ``Annotated[float, AtLeast(0)]``
a number >= 0, ``bool`` true or false, ``Annotated[str, OneOf("a", "b")]`` one of the choices; ``... | None``
also allows null. :func:`check_arguments` raises one error line naming ``<prefix>.<argument>``, so the
module's signature, its check and the error text cannot drift apart. Rules across arguments (lengths that
must agree) stay with the module.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from litvision.support.errors import LitvisionError


@dataclass(frozen=True)
class AtLeast:
    lowest: float


class OneOf:
    def __init__(self, *choices: Any):
        self.choices = choices


def check_arguments(
    function: Callable, values: Mapping[str, Any], prefix: str, error: type[Exception] = LitvisionError
) -> None:
    """Raise ``error`` for the first of ``values`` that its annotation in ``function``'s signature rules out."""
    hints = typing.get_type_hints(function, include_extras=True)
    for name, value in values.items():
        if name in hints:
            wanted = _violated(hints[name], value)
            if wanted:
                raise error(f"{prefix}.{name} must be {wanted} (got {value!r})")


def _violated(hint: Any, value: Any) -> str | None:
    """What ``value`` should be, if it breaks ``hint``; None when it fits (or the hint sets no rule)."""
    nullable = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint):
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(rest) != 1:
            return None
        hint, nullable = rest[0], True
        if value is None:
            return None
    base, rules = hint, ()
    if typing.get_origin(hint) is typing.Annotated:
        base, *rules = typing.get_args(hint)
    null = "null or " if nullable else ""
    if base is bool:
        return None if isinstance(value, bool) else f"{null}true or false"
    for rule in rules:
        if isinstance(rule, OneOf) and not any(type(value) is type(c) and value == c for c in rule.choices):
            return null + _either(rule.choices)
        if isinstance(rule, AtLeast):
            integer = base is int
            number = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
            if not number or value < rule.lowest:
                lowest = int(rule.lowest) if integer else rule.lowest
                return f"{null}{'an integer' if integer else 'a number'} >= {lowest}"
    return None


def _either(choices: tuple) -> str:
    """``auto, true or false``: the choices as a config spells them."""
    names = [str(choice).lower() if isinstance(choice, bool) else str(choice) for choice in choices]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def locals_without_self(frame_locals: Mapping[str, Any]) -> dict[str, Any]:
    """A constructor's ``locals()`` at its first line: its arguments by name."""
    return {name: value for name, value in frame_locals.items() if name not in ("self", "__class__")}
