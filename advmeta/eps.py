"""Perturbation budgets on the 0–255 scale.

docs/protocols.md#conventions: ε is written ``k/255`` in configs, the CLI and results, and used as a float on
[0, 1] images. Results store both.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Annotated, Any

from advmeta.errors import ConfigError

EPS_BUDGET, EPS_STEP = "eps-budget", "eps-step"
"""The roles an ε-typed field declares (:func:`advmeta.hparams.field_type` reads them)."""

Eps = Annotated[float | int | str, EPS_BUDGET]
"""A perturbation budget: ``k/255`` text or a float on [0, 1]. A config field typed ``Eps`` is the
method's ε budget, whatever its name (``--eps`` sets it; a table's ε reaches it)."""
EpsStep = Annotated[float | int | str, EPS_STEP]
"""An attack's step size, written as an ε. The same values; a field typed ``EpsStep`` rather than
``Eps`` says it is a step, not a budget (``advmeta tune`` evaluates at the budgets a search trains
at, never at its step sizes)."""


TABLE = "table"
"""A grid evaluation's ``eps = "table"``: the table's ε (:mod:`advmeta.plan.epsplan`)."""
PENDING = "eps*"
"""The ε of a table still to be calibrated (a dry run lists its trials at it)."""


class Epsilon(float):
    """A perturbation budget as one value: the float on [0, 1] images and its canonical ``k/255``
    text (:attr:`text`, also ``str()``), made once from what was typed (``"16/255"``, ``"0.0627"``,
    a number) and carried as it is from the option to the attack's projection. It is a float
    wherever arithmetic needs one; wherever a budget is named (a trial's id, a row's ``eps_str``, a
    message) its text is written.

    Examples:
        >>> e = Epsilon("16/255")
        >>> e == 16 / 255, e.text, str(e)
        (True, '16/255', '16/255')
        >>> Epsilon(e) is e
        True
    """

    text: str

    __slots__ = ("text",)

    def __new__(cls, value: Eps | Epsilon) -> Epsilon:
        if isinstance(value, Epsilon):
            return value
        text = format_eps(value)
        made = super().__new__(cls, parse_eps(text))  # the float its canonical text names, exactly
        made.text = text
        return made

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Epsilon({self.text!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # another process (a trial's, through Ray's object store) gets the same float and text, not a re-parse
        return (_epsilon, (float(self), self.text))


def _epsilon(value: float, text: str) -> Epsilon:
    """An unpickled :class:`Epsilon`: its float and text as they were."""
    made = float.__new__(Epsilon, value)
    made.text = text
    return made


def parse_eps(eps: Eps) -> float:
    """ε as a float on the [0, 1] scale.

    Accepts ``"8/255"``, ``"0.2/255"``, ``"0.03"`` or a number. Raises :class:`ConfigError` for
    malformed, negative or non-finite values.

    Examples:
        >>> parse_eps("8/255") == 8 / 255
        True
        >>> parse_eps(0.5)
        0.5
    """
    if isinstance(eps, Epsilon):
        return eps
    if isinstance(eps, bool):
        raise ConfigError(f"malformed epsilon {eps!r}")
    if isinstance(eps, (int, float)):
        value = float(eps)
    elif isinstance(eps, str):
        text = eps.strip()
        try:
            if "/" in text:
                num, _, den = text.partition("/")
                value = float(num) / float(den)
            else:
                value = float(text)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"malformed epsilon {eps!r}: write it as k/255 (e.g. 8/255) or a float") from None
    else:
        raise ConfigError(f"malformed epsilon {eps!r}: write it as k/255 (e.g. 8/255) or a float")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"epsilon must be a finite number >= 0, got {eps!r}")
    return value


def format_eps(eps: Eps) -> str:
    """ε as the string ``k/255`` with k written as short as it is exact (``"0.2/255"``).

    Examples:
        >>> format_eps(8 / 255)
        '8/255'
        >>> format_eps("0.2/255")
        '0.2/255'
    """
    if isinstance(eps, Epsilon):
        return eps.text
    k = parse_eps(eps) * 255
    for digits in range(0, 7):
        r = round(k, digits)
        if abs(r - k) < 1e-9:
            text = f"{r:.{digits}f}"
            return f"{text}/255"
    return f"{Fraction(k).limit_denominator(10**6)}/255"


# The largest ε a run accepts: at 128/255 a perturbation may already move any pixel half-way
# across [0, 1] (the masking checks' PGD at 4 × ε stops there too); 300/255 or 0.9 is a typo
# (a k/255 read as k, or a missing /255), not an experiment.
MAX_EPS = 128 / 255


def check_eps_value(value: Any, what: str) -> None:
    """``value`` is an ε (``k/255``, a number in [0, :data:`MAX_EPS`]) or the pending/table placeholders.

    Raises:
        ConfigError: a malformed or negative ε, or one above :data:`MAX_EPS`.
    """
    if value in (TABLE, PENDING):
        return
    try:
        eps = parse_eps(value)
    except ConfigError as err:
        raise ConfigError(f"{what}: {err}") from None
    if eps > MAX_EPS + 1e-12:
        scaled = "" if str(value).strip().endswith("/255") else f" (= {eps * 255:g}/255)"
        raise ConfigError(f"{what}: ε {value}{scaled} is above 128/255, the largest advmeta accepts "
                          "(images are in [0, 1]; write ε as k/255, e.g. 8/255)")
