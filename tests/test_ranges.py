"""Ranges and lists of hyper-parameter values: parsing and rejection of bad input."""

from __future__ import annotations

import dataclasses

import pytest

from advmeta.errors import ConfigError
from advmeta.eps import Eps, EpsStep
from advmeta.hparams import Kind, field_type, typed_fields
from advmeta.plan.space import ValueRange, as_list, parse_values


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("0:5", Kind.FLOAT, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
        ("0:1:0.25", Kind.FLOAT, [0.0, 0.25, 0.5, 0.75, 1.0]),
        ("0.1,1,10", Kind.FLOAT, [0.1, 1.0, 10.0]),
        ("1:10:3", Kind.INT, [1, 4, 7, 10]),
        ("3", Kind.INT, [3]),
        ("true,false", Kind.BOOL, [True, False]),
        ("pgd,fgsm", Kind.STR, ["pgd", "fgsm"]),
        ("2/255:8/255:2/255", Kind.EPS, ["2/255", "4/255", "6/255", "8/255"]),
        ("0.2/255,2/255", Kind.EPS, ["0.2/255", "2/255"]),
        ("0:1:0.1", Kind.FLOAT, [round(0.1 * i, 12) for i in range(11)]),
        ("-1:1", Kind.FLOAT, [-1.0, 0.0, 1.0]),
    ],
)
def test_parse_values(text: str, kind: Kind, expected: list[object]) -> None:
    values = as_list(parse_values(text, kind))
    assert (list(map(str, values)) if kind is Kind.EPS else values) == expected  # ε: Epsilons, named by their k/255


def test_range_without_step_is_continuous_for_a_search() -> None:
    rng = parse_values("0:5")
    assert isinstance(rng, ValueRange) and rng.step is None and (rng.lo, rng.hi) == (0.0, 5.0)


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("0:5:0", Kind.FLOAT, "step"),
        ("0:5:-1", Kind.FLOAT, "step"),
        ("a:b", Kind.FLOAT, "not a number"),
        ("5:0", Kind.FLOAT, "lo > hi"),
        ("1:2:3:4", Kind.FLOAT, "lo:hi"),
        ("1,,2", Kind.FLOAT, "empty"),
        ("", Kind.FLOAT, "empty"),
        ("x", Kind.FLOAT, "not a valid float"),
        ("1.5", Kind.INT, "not a valid int"),
        ("maybe", Kind.BOOL, "not a valid bool"),
        ("true:false", Kind.BOOL, "boolean"),
        ("8/0", Kind.EPS, "epsilon"),
        ("-2/255", Kind.EPS, "epsilon"),
        ("2/255:x/255", Kind.EPS, "not a number"),
        ("0:1e9:1e-9", Kind.FLOAT, "values"),
        ("1:2,3", Kind.FLOAT, "mixes"),
        ("inf", Kind.FLOAT, "not a valid float"),
    ],
)
def test_bad_input_is_a_one_line_config_error(text: str, kind: Kind, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_values(text, kind, option="--x")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("--x")


@dataclasses.dataclass(frozen=True)
class _Config:
    rate: float = 0.1
    steps: int = 1
    flag: bool = False
    eps_name: str = "8/255"  # named like an ε, typed str: a str
    budget: Eps = "8/255"
    step: EpsStep = "2/255"
    maybe: int | None = None
    many: tuple[float, ...] = ()


def test_a_fields_kind_is_read_from_its_declared_type_not_its_text_or_name() -> None:
    """typing.get_type_hints resolves a config's annotations (``from __future__ import annotations``
    leaves them as text); the kind comes from the types: an ε is a type, a str named like one is a str."""
    kinds = {n: f.type for n, f in typed_fields(_Config).items()}
    assert kinds["rate"].kind is Kind.FLOAT and kinds["steps"].kind is Kind.INT and kinds["flag"].kind is Kind.BOOL
    assert kinds["eps_name"].kind is Kind.STR and not kinds["eps_name"].budget
    assert kinds["budget"].kind is Kind.EPS and kinds["budget"].budget and not kinds["budget"].step
    assert kinds["step"].kind is Kind.EPS and kinds["step"].step and not kinds["step"].budget
    assert kinds["maybe"].kind is Kind.INT and kinds["maybe"].optional and kinds["maybe"].scalar
    assert kinds["many"].kind is Kind.FLOAT and not kinds["many"].scalar
    assert field_type(str).kind is Kind.STR
