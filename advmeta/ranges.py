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

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from advmeta.eps import format_eps, parse_eps
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


def _text(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return str(text).replace(" ", "")


def is_step(annotation: Any) -> bool:
    """Whether a field typed ``annotation`` is an attack's step size (:data:`advmeta.eps.EpsStep`), not a budget."""
    return "EpsStep" in _text(annotation)


def is_budget(annotation: Any) -> bool:
    """Whether a field typed ``annotation`` is an ε budget (:data:`advmeta.eps.Eps`, not a step size)."""
    return kind_of(annotation) is Kind.EPS and not is_step(annotation)


def kind_of(annotation: Any) -> Kind:
    """The :class:`Kind` for a dataclass field's type annotation: an ε is a field typed
    :data:`advmeta.eps.Eps` (or ``EpsStep``), whatever its name."""
    text = _text(annotation)
    if "Eps" in text:
        return Kind.EPS
    if text.startswith("bool"):
        return Kind.BOOL
    if text.startswith("int"):
        return Kind.INT
    if text.startswith("float"):
        return Kind.FLOAT
    return Kind.STR


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
