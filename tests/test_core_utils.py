"""ε parsing, registries and the result schema."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from advmeta import results
from advmeta.eps import format_eps, parse_eps
from advmeta.errors import ConfigError
from advmeta.registry import Registry

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "value"),
    [("8/255", 8 / 255), ("0.2/255", 0.2 / 255), ("0.03", 0.03), (0, 0.0), (0.5, 0.5), (" 2/255 ", 2 / 255)],
)
def test_parse_eps(text: object, value: float) -> None:
    assert math.isclose(parse_eps(text), value)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["-1/255", "a/255", "8/0", "", "nan", "inf", None, True, "8//255"])
def test_parse_eps_rejects(bad: object) -> None:
    with pytest.raises(ConfigError):
        parse_eps(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("eps", ["8/255", "0.2/255", "2/255", "16/255", "0/255", "1.25/255"])
def test_format_eps_round_trips(eps: str) -> None:
    assert format_eps(parse_eps(eps)) == eps


def test_registry_unknown_name_lists_known() -> None:
    reg: Registry[int] = Registry("thing", "advmeta")
    reg._discovered = True  # nothing to discover in this test
    reg.register("Alpha")(1)
    assert reg.get("alpha") == 1 and "ALPHA" in reg
    with pytest.raises(ConfigError, match="unknown thing 'beta'; known: alpha"):
        reg.get("beta")
    with pytest.raises(ValueError):
        reg.register("alpha")(2)


def test_mean_ci95_is_the_student_t_interval_everywhere() -> None:
    from advmeta import stats

    mean, ci = results.mean_ci95([0.0, 100.0, 0.0, 100.0])
    # t(0.975, 3 df) = 3.18245 (tables); sd = 57.735
    assert mean == 50.0 and math.isclose(ci, 3.182446305284263 * 57.735026918962575 / 2, rel_tol=1e-9)
    assert results.mean_ci95 is stats.mean_ci95  # one function for results, claims, report and curves
    for df, q in ((1, 12.706204736), (4, 2.776445105), (19, 2.093024054), (120, 1.979930405)):
        assert math.isclose(stats.t_quantile(0.975, df), q, rel_tol=1e-8)
    assert math.isclose(stats.t_quantile(0.995, 10), 3.169272673, rel_tol=1e-8)
    # an accuracy over images: the same interval as the 0/100 scores' (L2L rows)
    assert math.isclose(stats.proportion_ci95(30.0, 10), results.mean_ci95([100.0] * 3 + [0.0] * 7)[1])
    assert math.isnan(results.mean_ci95([5.0])[1])


def test_frame_round_trips_with_documented_dtypes(tmp_path: Path) -> None:
    row = {"sweep": "s", "trial_id": "t1", "status": "ok", "method": "tafl", "acc": 91.5, "acc_ci95": 1.2,
           "n_way": 5, "first_order": True, "eps": 8 / 255, "eps_str": "8/255"}
    row |= results.hparam_columns({"gamma": 2.0, "k": 1, "attack": "pgd"})
    frame = results.to_frame([row, {**row, "trial_id": "t2", "hp_gamma": None}])
    path = results.write_parquet_atomic(frame, tmp_path / "summary.parquet")
    back = pd.read_parquet(path)
    for col in results.SUMMARY_COLUMNS:
        assert str(back[col.name].dtype) == col.dtype, col.name
    assert back["hp_gamma"].dtype == "float64" and back["hp_k"].dtype == "Int64"
    assert list(back["trial_id"]) == ["t1", "t2"]
    assert not list(tmp_path.glob(".*tmp"))


def test_frame_rejects_unknown_columns() -> None:
    with pytest.raises(KeyError):
        results.to_frame([{"accuracy": 1.0}])


def test_results_readme_is_generated_from_schema() -> None:
    text = (REPO / "results" / "README.md").read_text()
    assert results.schema_markdown() in text, "regenerate: python -m advmeta.results (see results/README.md)"


def test_atomic_writes_are_readable_by_others_and_leave_nothing_on_failure(tmp_path) -> None:
    """Results get open()'s permissions (0666 less the umask), not mkstemp's private 0600."""
    import os

    import pandas as pd

    from advmeta.atomic import atomic_path, write_text_atomic
    from advmeta.results import write_parquet_atomic

    old = os.umask(0o022)
    try:
        pq = write_parquet_atomic(pd.DataFrame({"a": [1]}), tmp_path / "s.parquet")
        txt = write_text_atomic(tmp_path / "t.json", "[]")
    finally:
        os.umask(old)
    assert (pq.stat().st_mode & 0o777) == 0o644 and (txt.stat().st_mode & 0o777) == 0o644
    with pytest.raises(RuntimeError):
        with atomic_path(txt) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert txt.read_text() == "[]" and sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet", "t.json"]
