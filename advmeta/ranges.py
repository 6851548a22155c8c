"""Ranges and lists of hyper-parameter values written on the command line.

Three forms, for any field of a learner's configuration:

- a list ``a,b,c`` — exactly those values;
- a range ``lo:hi:step`` — ``lo, lo+step, …`` up to and including ``hi`` (within rounding);
- a range ``lo:hi`` — the same with step 1 for a grid, or the continuous interval [lo, hi]
  when a search algorithm samples it (:attr:`ValueRange.step` is then ``None``).

Values are typed after the field (float, int, bool, str, ε). ε accepts ``k/255`` in every
position: ``2/255:8/255:2/255`` is 2/255, 4/255, 6/255, 8/255. Malformed input raises
:class:`~advmeta.errors.ConfigError` with one line naming the option and the problem.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from advmeta.eps import EPS_BUDGET, EPS_STEP, format_eps, parse_eps
from advmeta.errors import ConfigError

_MAX_VALUES = 10_000
"""A range longer than this is almost surely a typo (e.g. a step of 1e-6)."""


class Kind(str, Enum):
    """How the text of one value is read."""

    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    STR = "str"
    EPS = "eps"


@dataclass(frozen=True)
class ValueRange:
    """A numeric interval ``[lo, hi]``, stepped by ``step`` (``None``: continuous, grid step 1)."""

    lo: float
    hi: float
    step: float | None
    kind: Kind

    def grid(self) -> list[Any]:
        """The values ``lo, lo+step, …, ≤ hi`` (step 1 when none was given), typed after ``kind``."""
        step = 1.0 if self.step is None else self.step
        n = int(math.floor((self.hi - self.lo) / step + 1e-9)) + 1
        if n > _MAX_VALUES:
            raise ConfigError(f"range {self.describe()} has {n} values (more than {_MAX_VALUES})")
        values = [self.lo + i * step for i in range(n)]
        return [_typed(round(v, 12), self.kind) for v in values]

    def describe(self) -> str:
        """The range as the user would write it."""
        fmt: Callable[[float], str] = format_eps if self.kind is Kind.EPS else (lambda v: f"{v:g}")
        parts = [fmt(self.lo), fmt(self.hi)] + ([] if self.step is None else [fmt(self.step)])
        return ":".join(parts)


Values = list[Any] | ValueRange


@dataclass(frozen=True)
class FieldType:
    """What a config field's declared type says, read with :func:`typing.get_type_hints` (never
    from the annotation's text).

    Attributes:
        kind: how one value of it is read (a tuple's: its items').
        budget: an ε budget (typed :data:`advmeta.eps.Eps`), whatever the field's name.
        step: an attack's step size written as an ε (typed :data:`advmeta.eps.EpsStep`).
        optional: it may be None.
        scalar: one value (a tuple, list or dict is not, and is not tunable from the command line).
    """

    kind: Kind
    budget: bool = False
    step: bool = False
    optional: bool = False
    scalar: bool = True


@dataclass(frozen=True)
class TypedField:
    """A field of a config dataclass with its :class:`FieldType`, default (``dataclasses.MISSING``
    when it has none) and metadata (``doc``, ``low``/``high``, ``choices``, ``log``)."""

    name: str
    type: FieldType
    default: Any
    metadata: Mapping[str, Any]


def typed_fields(cls: type) -> dict[str, TypedField]:
    """Every field of the dataclass ``cls``, typed (resolved once per class).

    Raises:
        ConfigError: a field annotation that does not resolve (a name its module does not define).
    """
    return dict(_typed_fields(cls))


@functools.cache
def _typed_fields(cls: type) -> tuple[tuple[str, TypedField], ...]:
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except NameError as err:
        raise ConfigError(f"{cls.__qualname__}: a field's type does not resolve ({err})") from None
    out = []
    for f in dataclasses.fields(cls):
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        out.append((f.name, TypedField(f.name, field_type(hints[f.name]), default, dict(f.metadata or {}))))
    return tuple(out)


def field_type(hint: Any) -> FieldType:
    """The :class:`FieldType` of a resolved type hint (``Eps``, ``int | None``, ``tuple[float, ...]`` …)."""
    roles: set[str] = set()
    optional, scalar = False, True
    while True:
        origin = typing.get_origin(hint)
        if origin is typing.Annotated:
            hint, *meta = typing.get_args(hint)
            roles |= {m for m in meta if isinstance(m, str)}
        elif origin in (typing.Union, types.UnionType):
            args = typing.get_args(hint)
            rest = [a for a in args if a is not type(None)]
            optional = optional or len(rest) < len(args)
            if len(rest) == 1:
                hint = rest[0]
                continue
            # a union of several types (ε's float | int | str): its role decides, else its first member
            for a in rest:
                if typing.get_origin(a) is typing.Annotated:
                    roles |= {m for m in typing.get_args(a)[1:] if isinstance(m, str)}
            hint = rest[0]
            if typing.get_origin(hint) is typing.Annotated:
                continue
            break
        elif origin in (tuple, list, set, frozenset, collections.abc.Sequence):
            scalar = False
            items = [a for a in typing.get_args(hint) if a is not Ellipsis]
            hint = items[0] if items else str
        elif origin in (dict, collections.abc.Mapping):
            return FieldType(Kind.STR, optional=optional, scalar=False)
        else:
            break
    if EPS_BUDGET in roles or EPS_STEP in roles:
        return FieldType(Kind.EPS, budget=EPS_BUDGET in roles and EPS_STEP not in roles and scalar,
                         step=EPS_STEP in roles, optional=optional, scalar=scalar)
    kinds = {bool: Kind.BOOL, int: Kind.INT, float: Kind.FLOAT}
    return FieldType(kinds.get(hint, Kind.STR), optional=optional, scalar=scalar)


def _typed(value: float, kind: Kind) -> Any:
    if kind is Kind.INT:
        return int(round(value))
    if kind is Kind.EPS:
        return format_eps(value)
    return float(value)


def parse_scalar(text: str, kind: Kind, option: str = "value") -> Any:
    """One value typed after ``kind``; ε comes back as its canonical ``k/255`` string."""
    text = text.strip()
    if not text:
        raise ConfigError(f"{option}: empty value")
    try:
        if kind is Kind.EPS:
            return format_eps(parse_eps(text))
        if kind is Kind.INT:
            number = float(text)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind is Kind.FLOAT:
            number = float(text)
            if not math.isfinite(number):
                raise ValueError
            return number
        if kind is Kind.BOOL:
            lowered = text.lower()
            if lowered in {"true", "1", "yes", "on"}:
                return True
            if lowered in {"false", "0", "no", "off"}:
                return False
            raise ValueError
    except ConfigError as err:
        raise ConfigError(f"{option}: {err}") from None
    except ValueError:
        raise ConfigError(f"{option}: {text!r} is not a valid {kind.value}") from None
    return text


def _number(text: str, kind: Kind, option: str) -> float:
    try:
        if kind is Kind.EPS:
            return parse_eps(text)
        value = float(text)
    except (ConfigError, ValueError):
        raise ConfigError(f"{option}: {text!r} in range is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{option}: {text!r} in range is not finite")
    return value


def parse_values(text: str, kind: Kind = Kind.FLOAT, option: str = "value") -> Values:
    """Parse ``a,b,c``, ``lo:hi`` or ``lo:hi:step`` (see the module docstring).

    Args:
        text: what the user wrote.
        kind: how each value is read.
        option: the option's name for error messages (``--gamma``).

    Returns:
        A list of typed values, or a :class:`ValueRange`.

    Raises:
        ConfigError: malformed input — a zero or negative step, ``lo > hi``, a non-number in a
            range, a range over a boolean or string field, an empty item.

    Examples:
        >>> parse_values("0.1,1,10")
        [0.1, 1.0, 10.0]
        >>> parse_values("0:5").grid()
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        >>> parse_values("2/255:8/255:2/255", Kind.EPS).grid()
        ['2/255', '4/255', '6/255', '8/255']
    """
    text = text.strip()
    if not text:
        raise ConfigError(f"{option}: empty value")
    if ":" in text and kind not in (Kind.STR,):
        if "," in text:
            raise ConfigError(f"{option}: {text!r} mixes a range (:) and a list (,); use one")
        if kind is Kind.BOOL:
            raise ConfigError(f"{option}: a boolean takes a list (true,false), not a range")
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ConfigError(f"{option}: {text!r} is not lo:hi or lo:hi:step")
        lo, hi = (_number(p, kind, option) for p in parts[:2])
        step = _number(parts[2], kind, option) if len(parts) == 3 else None
        if step is not None and step <= 0:
            raise ConfigError(f"{option}: step of {text!r} must be > 0")
        if lo > hi:
            raise ConfigError(f"{option}: {text!r} has lo > hi")
        rng = ValueRange(lo, hi, step, kind)
        try:
            rng.grid()  # validates the length now, not when a trial is built
        except ConfigError as err:
            raise ConfigError(f"{option}: {err}") from None
        return rng
    items = text.split(",")
    if any(not i.strip() for i in items):
        raise ConfigError(f"{option}: {text!r} has an empty item")
    values = [parse_scalar(i, kind, option) for i in items]
    return list(dict.fromkeys(values))  # drop repeats, keep order


def as_list(values: Values) -> list[Any]:
    """The values of a list or the grid of a range."""
    return values.grid() if isinstance(values, ValueRange) else list(values)
