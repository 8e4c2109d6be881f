"""Field type checks for the config dataclasses.

gin passes bound values through unchecked, so `--gin.ModelConfig.d_model=abc` would otherwise
fail deep inside a computation; every config calls `check_field_types(self)` first thing in
__post_init__ and fails with the field, the value and the expected type.
"""

from __future__ import annotations

import dataclasses
import types
import typing

_SIMPLE = (int, float, str, bool)


def _allowed(hint: object) -> tuple:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _matches(value: object, t: type) -> bool:
    if t is float:  # an int is a fine float; a bool is neither
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t)


def check_field_types(obj: object) -> None:
    """TypeError for any field whose value does not match a simple declared type
    (int, float, str, bool, optionally | None); other annotations are left to the class."""
    hints = typing.get_type_hints(type(obj))
    for field in dataclasses.fields(obj):
        value, allowed = getattr(obj, field.name), _allowed(hints[field.name])
        if value is None and type(None) in allowed:
            continue
        checkable = [t for t in allowed if t is not type(None)]
        if not checkable or any(t not in _SIMPLE for t in checkable):
            continue
        if not any(_matches(value, t) for t in checkable):
            expected = " or ".join(t.__name__ for t in allowed)
            raise TypeError(
                f"{type(obj).__name__}.{field.name}={value!r} has type {type(value).__name__}; expected {expected}."
            )
