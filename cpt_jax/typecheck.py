"""Field type and range checks for the config dataclasses.

gin passes bound values through unchecked, so `--gin.ModelConfig.d_model=abc` would otherwise
fail deep inside a computation; every config calls `check_field_types(self)` first thing in
__post_init__ and fails with the field, the value and the expected type.

Every int and float field also has a range: the class declares

    BOUNDS: ClassVar[dict[str, Bound]] = {"log_every": at_least(1, "steps between logs"), ...}

(merged over base classes), and check_field_types then checks each value against its Bound:
a ValueError "Class.field=value is out of range: must be >= 1 (...)" before anything is built.
Float fields must also be finite. tests/test_config_bounds.py fails for a numeric field of a
config class without a declared Bound.
"""

from __future__ import annotations

import dataclasses
import math
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
    """TypeError for any field whose value does not match a simple declared type (int, float,
    str, bool, a config dataclass, optionally | None; other annotations are left to the class),
    then check_bounds: ValueError for a numeric field outside its declared Bound."""
    hints = typing.get_type_hints(type(obj))
    for field in dataclasses.fields(obj):
        value, allowed = getattr(obj, field.name), _allowed(hints[field.name])
        if value is None and type(None) in allowed:
            continue
        checkable = [t for t in allowed if t is not type(None)]
        configs = [t for t in checkable if isinstance(t, type) and dataclasses.is_dataclass(t)]
        if configs and len(configs) == len(checkable):  # a nested config, e.g. TrainConfig.model
            if not isinstance(value, tuple(configs)):
                expected = " or ".join(t.__name__ for t in allowed)
                raise TypeError(
                    f"{type(obj).__name__}.{field.name}={value!r} has type {type(value).__name__}; expected "
                    f"{expected}, e.g. {type(obj).__name__}.{field.name} = @{configs[0].__name__}()."
                )
            continue
        if not checkable or any(t not in _SIMPLE for t in checkable):
            continue
        if not any(_matches(value, t) for t in checkable):
            expected = " or ".join(t.__name__ for t in allowed)
            raise TypeError(
                f"{type(obj).__name__}.{field.name}={value!r} has type {type(value).__name__}; expected {expected}."
            )
    check_bounds(obj)


@dataclasses.dataclass(frozen=True)
class Bound:
    """The allowed range of a numeric field: lo <= value <= hi (lo < value with lo_open, value < hi
    with hi_open); None is unbounded on that side. why: what the field means, said in the error
    with the fix."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    why: str = ""

    def contains(self, value: float) -> bool:
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            return False
        return True

    def describe(self) -> str:
        """'>= 1', '> 0', 'in [0, 1)', ..."""
        lo, hi = _show(self.lo), _show(self.hi)
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {lo}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {hi}"
        return "finite"


def at_least(lo: float, why: str = "") -> Bound:
    """value >= lo."""
    return Bound(lo=lo, why=why)


def above(lo: float, why: str = "") -> Bound:
    """value > lo."""
    return Bound(lo=lo, lo_open=True, why=why)


def between(lo: float, hi: float, why: str = "", lo_open: bool = False, hi_open: bool = False) -> Bound:
    """lo <= value <= hi (either end open on request)."""
    return Bound(lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open, why=why)


SEED = between(0, 2**32 - 1, "a seed; the shuffles and PRNG keys take 32 bits")


def _show(x: float | None) -> str:
    if isinstance(x, int) and x >= 2**16 and (x + 1) & x == 0:  # 2**k - 1
        return f"2**{(x + 1).bit_length() - 1} - 1"
    return repr(x)


def declared_bounds(cls: type) -> dict[str, Bound]:
    """The BOUNDS of cls and its bases (a subclass's entry wins)."""
    merged: dict[str, Bound] = {}
    for klass in reversed(cls.__mro__):
        merged.update(vars(klass).get("BOUNDS", {}))
    return merged


def check_bounds(obj: object) -> None:
    """ValueError naming Class.field, the value, the allowed range and the fix for any numeric
    field outside its declared Bound (or a float that is NaN or infinite). Called by
    check_field_types, after the types are known to be right."""
    cls = type(obj).__name__
    bounds = declared_bounds(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    unknown = sorted(set(bounds) - names)
    if unknown:
        raise AssertionError(f"{cls}.BOUNDS names {unknown}, which are not fields of {cls}.")
    for name, bound in bounds.items():
        value = getattr(obj, name)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        why = f" ({bound.why})" if bound.why else ""
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{cls}.{name}={value!r} is not a finite number: must be {bound.describe()}{why}.")
        if not bound.contains(value):
            raise ValueError(f"{cls}.{name}={value!r} is out of range: must be {bound.describe()}{why}.")
