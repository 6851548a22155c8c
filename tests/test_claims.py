"""The claims engine (advmeta.claims) on synthetic rows, and the shipped claim files."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from advmeta.claims import CURVE_KNOWN, CURVE_QUANTITIES, KNOWN, claims_dir, evaluate_claims, load_claims, verdict
from advmeta.claims_io import write_claims
from advmeta.errors import ConfigError
from advmeta.results import to_frame

REPO = Path(__file__).resolve().parents[1]
ROBUST = """
[metrics.robust]
scenario = "whitebox"
query = "adv"
attack = "pgd"
eps = "table"
"""


def row(method: str, acc: float, ci: float = 1.0, trial: str | None = None, **kw: Any) -> dict[str, Any]:
    """One summary row: a white-box PGD-10 row at 32/255 unless ``kw`` says otherwise."""
    out = {"trial_id": trial or f"t-{method}-{kw.get('k_shot', 1)}", "status": "ok", "method": method,
           "scenario": "whitebox", "support": "clean", "query": "adv", "attack": "pgd",
           "attack_params": json.dumps({"steps": 10}), "eps": 32 / 255, "eps_str": "32/255", "finetune_step": 3,
           "k_shot": 1, "n_episodes": 100, "acc": acc, "acc_ci95": ci, "train_seconds": 100.0,
           "train_iterations": 10, "attack_iterations": 10, "attack_restarts": 1, "converged": True}
    out.update(kw)
    if out["attack"] == "none":
        out.update(attack_iterations=None, attack_restarts=None, converged=None)
    return out


def claims_file(tmp_path: Path, body: str, name: str = "test.toml") -> list[Path]:
    path = tmp_path / name
    path.write_text('paper = "Test"\ntitle = "a test paper"\n' + body)
    return [path]


def one_claim(value: str, op: str, threshold: float, extra: str = "", metrics: str = ROBUST) -> str:
    return metrics + f'\n[[claims]]\nid = "c"\nclaim = "words"\ntable = "t"\nvalue = "{value}"\nop = "{op}"\n' \
                     f"threshold = {threshold}\n{extra}\n"


def check(tmp_path: Path, rows: list[dict[str, Any]], body: str, episodes: pd.DataFrame | None = None,
          manifest: dict[str, Any] | None = None) -> pd.DataFrame:
    return evaluate_claims(to_frame(rows), episodes, manifest, claims_file(tmp_path, body))


# -- verdicts exactly at the edges of the interval ----------------------------------------------------------
EDGES = [  # value with ci 2 against threshold 10: (op, value, verdict)
    (">=", 12.0, "holds"), (">=", 11.5, "inconclusive"), (">=", 8.0, "inconclusive"), (">=", 7.5, "fails"),
    (">", 12.0, "inconclusive"), (">", 12.5, "holds"), (">", 8.0, "fails"), (">", 8.5, "inconclusive"),
    ("<=", 8.0, "holds"), ("<=", 12.0, "inconclusive"), ("<=", 12.5, "fails"), ("<=", 8.5, "inconclusive"),
    ("<", 8.0, "inconclusive"), ("<", 7.5, "holds"), ("<", 12.0, "fails"), ("<", 11.5, "inconclusive"),
]


@pytest.mark.parametrize(("op", "value", "expected"), EDGES)
def test_verdict_at_the_ci_edges(tmp_path: Path, op: str, value: float, expected: str) -> None:
    assert verdict(value, 2.0, op, 10.0) == expected
    out = check(tmp_path, [row("maml", value, ci=2.0)], one_claim("robust(maml)", op, 10))
    assert out["verdict"].tolist() == [expected]
    assert out.loc[0, "value"] == value and out.loc[0, "ci95"] == 2.0 and out.loc[0, "ci_method"] == "independent"


def test_independent_ci_is_root_sum_of_weighted_squares(tmp_path: Path) -> None:
    rows = [row("aq", 50.0, ci=3.0), row("maml", 20.0, ci=4.0)]
    out = check(tmp_path, rows, one_claim("robust(aq) - 0.5*robust(maml)", ">=", 0))
    assert out.loc[0, "value"] == pytest.approx(40.0)
    assert out.loc[0, "ci95"] == pytest.approx(math.sqrt(3.0**2 + 0.25 * 4.0**2))
    assert out.loc[0, "rows"] == "aq pgd-10@32/255 − 0.5·maml pgd-10@32/255, 1-shot"


def _episodes(trial: str, accs: list[float], index: list[int] | None = None) -> pd.DataFrame:
    index = list(range(len(accs))) if index is None else index
    return pd.DataFrame({"trial_id": trial, "scenario": "whitebox", "support": "clean", "query": "adv",
                         "attack": "pgd", "eps_str": "32/255", "finetune_step": 3, "episode_index": index,
                         "acc": accs})


def test_paired_ci_equals_a_hand_computation(tmp_path: Path) -> None:
    a, b = [50.0, 60.0, 70.0, 40.0, 55.0], [30.0, 50.0, 40.0, 20.0, 45.0]
    rows = [row("aq", float(np.mean(a)), ci=9.0), row("maml", float(np.mean(b)), ci=9.0)]
    body = one_claim("robust(aq) - 0.5*robust(maml)", ">=", 0)
    eps = pd.concat([_episodes("t-aq-1", a), _episodes("t-maml-1", b)])
    out = check(tmp_path, rows, body, eps)
    diff = np.array(a) - 0.5 * np.array(b)
    assert out.loc[0, "ci_method"] == "paired" and out.loc[0, "n_episodes"] == 5
    assert out.loc[0, "ci95"] == pytest.approx(2.7764451051977987 * diff.std(ddof=1) / math.sqrt(5))  # t(0.975, 4 df)
    assert out.loc[0, "value"] == pytest.approx(diff.mean())
    # a row extended past the other's episodes (another claim's block): paired on the common ones
    shifted = pd.concat([_episodes("t-aq-1", a), _episodes("t-maml-1", b, [0, 1, 2, 3, 9])])
    out = check(tmp_path, rows, body, shifted)
    assert out.loc[0, "ci_method"] == "paired" and out.loc[0, "n_episodes"] == 4
    assert out.loc[0, "value"] == pytest.approx(diff[:4].mean())
    # disjoint episode sets, or a duplicated episode: not paired, the rows' own CIs instead
    disjoint = pd.concat([_episodes("t-aq-1", a), _episodes("t-maml-1", b, [5, 6, 7, 8, 9])])
    doubled = pd.concat([_episodes("t-aq-1", a, [0, 1, 2, 3, 3]), _episodes("t-maml-1", b, [0, 1, 2, 3, 3])])
    for bad in (disjoint, doubled, _episodes("t-aq-1", a)):
        out = check(tmp_path, rows, body, bad)
        assert out.loc[0, "ci_method"] == "independent"
        assert out.loc[0, "ci95"] == pytest.approx(math.sqrt(81 + 0.25 * 81))


def test_a_claim_on_a_row_not_converged_is_unreliable_and_names_it(tmp_path: Path) -> None:
    """What the interval says does not count when a row's attack was still gaining at the cap."""
    body = one_claim("robust(aq) - robust(maml)", ">=", 15)
    good = check(tmp_path, [row("aq", 60.0), row("maml", 20.0)], body)
    assert good.loc[0, "verdict"] == "holds" and bool(good.loc[0, "reliable"])
    assert good.loc[0, "trial_ids"] == "t-aq-1 t-maml-1" and good.loc[0, "attack_iterations"] == 10
    assert json.loads(good.loc[0, "row_keys"])[0]["attack"] == "pgd"
    stuck = check(tmp_path, [row("aq", 60.0), row("maml", 20.0, converged=False, attack_iterations=80)], body)
    assert stuck.loc[0, "verdict"] == "unreliable" and not bool(stuck.loc[0, "reliable"])
    assert "maml pgd-10@32/255, 1-shot: not converged" in stuck.loc[0, "detail"]
    assert "the interval alone would say holds" in stuck.loc[0, "detail"]
    assert stuck.loc[0, "attack_iterations"] == 80 and "80 iterations" in stuck.loc[0, "decided_by"]
    # results written before escalation: null converged, judged by the trial's converged check
    old = [row("aq", 60.0, converged=None, attack_iterations=None), row("maml", 20.0, converged=None,
                                                                        attack_iterations=None)]
    unchecked = check(tmp_path, old, body)
    assert unchecked.loc[0, "verdict"] == "unreliable" and "convergence not checked" in unchecked.loc[0, "detail"]
    checks = to_frame([{"trial_id": t, "method": m, "eps_str": "32/255", "check": "converged", "passed": True}
                       for t, m in (("t-aq-1", "aq"), ("t-maml-1", "maml"))], "checks")
    passed = evaluate_claims(to_frame(old), None, None, claims_file(tmp_path, body), checks=checks)
    assert passed.loc[0, "verdict"] == "holds"
    failed = checks.assign(passed=[True, False])
    out = evaluate_claims(to_frame(old), None, None, claims_file(tmp_path, body), checks=failed)
    assert out.loc[0, "verdict"] == "unreliable" and "converged check failed" in out.loc[0, "detail"]


def test_a_claim_on_a_trial_suspected_of_masking_is_unreliable(tmp_path: Path) -> None:
    body = one_claim("robust(aq) - robust(maml)", ">=", 15) + one_claim(
        "clean(aq) - clean(maml)", ">=", -50, metrics='[metrics.clean]\nscenario = "whitebox"\nattack = "none"\n'
    ).replace('id = "c"', 'id = "c2"')
    rows = [row("aq", 60.0), row("maml", 20.0), row("aq", 90.0, attack="none", eps=0.0, eps_str="0/255"),
            row("maml", 90.0, attack="none", eps=0.0, eps_str="0/255")]
    checks = to_frame([{"trial_id": "t-aq-1", "method": "aq", "eps_str": "32/255", "check": "square-not-better",
                        "passed": False, "diagnosis": "masking suspected"}], "checks")
    out = evaluate_claims(to_frame(rows), None, None, claims_file(tmp_path, body), checks=checks).set_index("claim_id")
    assert out.loc["c", "verdict"] == "unreliable"
    assert "aq pgd-10@32/255, 1-shot: masking suspected (square-not-better)" in out.loc["c", "detail"]
    assert out.loc["c2", "verdict"] == "holds"  # a clean row is not a gradient attack's


def test_trials_that_differ_only_in_their_seed_take_the_interval_over_seeds(tmp_path: Path) -> None:
    body = one_claim("robust(aq) - robust(maml)", ">=", 15)
    aq, maml = [60.0, 50.0, 70.0], [20.0, 25.0, 15.0]
    rows = [row("aq", a, trial=f"aq{s}", seed=s) for s, a in enumerate(aq)] + \
           [row("maml", m, trial=f"maml{s}", seed=s) for s, m in enumerate(maml)]
    out = check(tmp_path, rows, body)
    diff = np.array(aq) - np.array(maml)
    assert out.loc[0, "ci_method"] == "t over seeds" and out.loc[0, "n_seeds"] == 3
    assert out.loc[0, "value"] == pytest.approx(diff.mean())
    assert out.loc[0, "ci95"] == pytest.approx(4.302652729911275 * diff.std(ddof=1) / math.sqrt(3))  # t(0.975, 2)
    assert "3 training seeds" in out.loc[0, "decided_by"]
    # two trials of one seed are not seeds: still ambiguous
    clash = check(tmp_path, rows + [row("aq", 10.0, trial="aq-other", seed=0)], body)
    assert math.isnan(clash.loc[0, "value"]) and "ambiguous" in clash.loc[0, "detail"]


def test_paired_claims_use_the_sequential_rules_level(tmp_path: Path) -> None:
    a, b = [50.0, 60.0, 70.0, 40.0, 55.0], [30.0, 50.0, 40.0, 20.0, 45.0]
    rows = [row("aq", float(np.mean(a))), row("maml", float(np.mean(b)))]
    eps = pd.concat([_episodes("t-aq-1", a), _episodes("t-maml-1", b)])
    body = one_claim("robust(aq) - robust(maml)", ">=", 0)
    one = check(tmp_path, rows, body, eps)
    three = check(tmp_path, rows, body, eps, manifest={"sequential": {"looks": 3}})
    diff = np.array(a) - np.array(b)
    from advmeta.stats import t_quantile

    assert three.loc[0, "ci95"] == pytest.approx(t_quantile(1 - 0.05 / 6, 4) * diff.std(ddof=1) / math.sqrt(5))
    assert three.loc[0, "ci95"] > one.loc[0, "ci95"] and "3 planned looks" in three.loc[0, "decided_by"]


def test_missing_rows_are_inconclusive(tmp_path: Path) -> None:
    out = check(tmp_path, [row("aq", 50.0)], one_claim("robust(aq) - robust(maml)", ">=", 0))
    assert out.loc[0, "verdict"] == "inconclusive" and math.isnan(out.loc[0, "value"])
    assert "no rows for maml" in out.loc[0, "detail"]


def test_a_sweep_of_only_failed_trials_gives_inconclusive_claims(tmp_path: Path) -> None:
    """Every trial an error row (e.g. NaN at evaluation): the claims say so instead of crashing the report."""
    failed = {k: None for k in ("acc_ci95", "scenario", "attack", "eps", "eps_str", "finetune_step")}
    out = check(tmp_path, [row("maml", math.nan, status="error", error="NonFiniteLossError: …", **failed)],
                one_claim("robust(maml)", "<", 40))
    assert out.loc[0, "verdict"] == "inconclusive" and "no rows for maml" in out.loc[0, "detail"]


def test_ambiguous_rows_are_inconclusive(tmp_path: Path) -> None:
    rows = [row("tafl", 50.0, trial="g0", hp_gamma=0.0), row("tafl", 40.0, trial="g2", hp_gamma=2.0),
            row("maml", 10.0)]
    out = check(tmp_path, rows, one_claim("robust(tafl) - robust(maml)", ">=", 0))
    assert out.loc[0, "verdict"] == "inconclusive"
    assert "ambiguous rows" in out.loc[0, "detail"] and "hp_gamma" in out.loc[0, "detail"]
    # a `where` that picks one trial settles it
    out = check(tmp_path, rows, one_claim("robust(tafl) - robust(maml)", ">=", 0, "where = { hp_gamma = 2.0 }"))
    assert out.loc[0, "verdict"] == "inconclusive"  # maml has no hp_gamma: its term finds no rows
    out = check(tmp_path, [*rows[:2], row("maml", 10.0, hp_gamma=2.0)],
                one_claim("robust(tafl) - robust(maml)", ">=", 0, "where = { hp_gamma = 2.0 }"))
    assert (out.loc[0, "verdict"], out.loc[0, "value"]) == ("holds", 30.0)
    # two different values in one trial (e.g. PGD at two step counts) are ambiguous too; equal ones are not
    same = [row("maml", 10.0), row("maml", 10.0, attack_params=json.dumps({"steps": 20}))]
    assert check(tmp_path, same, one_claim("robust(maml)", "<", 40)).loc[0, "verdict"] == "holds"
    differ = [row("maml", 10.0), row("maml", 5.0, attack_params=json.dumps({"steps": 20}))]
    out = check(tmp_path, differ, one_claim("robust(maml)", "<", 40))
    assert out.loc[0, "verdict"] == "inconclusive" and "ambiguous rows" in out.loc[0, "detail"]


PEAK = one_claim("robust(tafl)", ">", 0, 'kind = "peak"\nalong = "hp_gamma"\nnote = "run the tafl grid"')


def _gammas(accs: dict[float, list[float]]) -> list[dict[str, Any]]:
    return [row("tafl", acc, ci=1.0, trial=f"g{g}k{i}", hp_gamma=g, hp_k=float(i))
            for g, values in accs.items() for i, acc in enumerate(values)]


def test_peak_claim(tmp_path: Path) -> None:
    out = check(tmp_path, _gammas({0.0: [30.0], 1.0: [35.0], 2.0: [40.0], 3.0: [33.0]}), PEAK)
    assert out.loc[0, "value"] == pytest.approx(7.0) and out.loc[0, "ci95"] == pytest.approx(math.sqrt(2))
    assert out.loc[0, "verdict"] == "holds" and "hp_gamma=2 (best interior) − hp_gamma=3" in out.loc[0, "rows"]
    # cells average their trials (here two k values): γ=1 → 36 ± √2/2, γ=0 → 31, γ=2 → 39 (larger end)
    out = check(tmp_path, _gammas({0.0: [30.0, 32.0], 1.0: [35.0, 37.0], 2.0: [38.0, 40.0]}), PEAK)
    assert out.loc[0, "value"] == pytest.approx(-3.0) and out.loc[0, "verdict"] == "fails"
    assert out.loc[0, "ci95"] == pytest.approx(math.hypot(math.sqrt(2) / 2, math.sqrt(2) / 2))
    out = check(tmp_path, _gammas({0.0: [30.0], 2.0: [40.0]}), PEAK)
    assert out.loc[0, "verdict"] == "inconclusive"
    assert "needs ≥ 3 distinct values" in out.loc[0, "detail"] and "run the tafl grid" in out.loc[0, "detail"]


def test_for_each_gives_one_row_per_value(tmp_path: Path) -> None:
    rows = [row("aq", 50.0), row("maml", 20.0), row("aq", 30.0, k_shot=5), row("maml", 25.0, k_shot=5)]
    out = check(tmp_path, rows, one_claim("robust(aq) - robust(maml)", ">=", 15, 'for_each = "k_shot"'))
    assert out["k_shot"].tolist() == [1, 5] and out["group"].tolist() == ["k_shot=1", "k_shot=5"]
    assert out["value"].tolist() == [30.0, 5.0] and out["verdict"].tolist() == ["holds", "fails"]
    without = check(tmp_path, rows, one_claim("robust(aq) - robust(maml)", ">=", 15))
    assert len(without) == 1 and "ambiguous rows" in without.loc[0, "detail"]


def test_ratio_has_no_ci(tmp_path: Path) -> None:
    metrics = '[metrics.epoch]\nscenario = "l2l"\nattack = "none"\nquantity = "train_seconds / train_iterations"\n'
    body = one_claim("epoch(grad-l2l) / epoch(pgm)", "<", 1, metrics=metrics)

    def l2l(method: str, seconds: float) -> dict[str, Any]:
        return row(method, 80.0, scenario="l2l", support=None, query="clean", attack="none", attack_params="{}",
                   eps=0.0, eps_str="0/255", finetune_step=0, k_shot=None, train_seconds=seconds, train_iterations=20)

    out = check(tmp_path, [l2l("grad-l2l", 1200.0), l2l("pgm", 2000.0)], body)
    assert (out.loc[0, "value"], out.loc[0, "ci95"], out.loc[0, "verdict"]) == (pytest.approx(0.6), 0.0, "holds")
    out = check(tmp_path, [l2l("grad-l2l", 2400.0), l2l("pgm", 2000.0)], body)
    assert out.loc[0, "verdict"] == "fails" and pd.isna(out.loc[0, "k_shot"])


def test_table_eps_manifest_trials_and_row_filters(tmp_path: Path) -> None:
    rows = [row("maml", 30.0), row("maml", 60.0, eps=2 / 255, eps_str="2/255"),
            row("maml", 99.0, finetune_step=0, eps=2 / 255, eps_str="2/255"),  # not the last fine-tune step
            row("maml", 1.0, status="error", eps=2 / 255, eps_str="2/255"),  # failed trial rows never count
            row("maml", 5.0, eps=2 / 255, eps_str="2/255", attack_params=json.dumps({"steps": 10, "curve": "eps"})),
            row("maml", 0.0, trial="other-table", eps=2 / 255, eps_str="2/255")]
    body = one_claim("robust(maml)", "<", 40)
    manifest = {"table_eps": {"t": {"eps": ["2/255", "32/255"], "source": "paper"}},
                "trials": [{"trial_id": "t-maml-1", "table": ["t"]}, {"trial_id": "other-table", "table": ["u"]}]}
    out = check(tmp_path, rows, body, manifest=manifest)
    assert (out.loc[0, "value"], out.loc[0, "verdict"]) == (60.0, "fails")
    assert "table t's primary ε (paper)" in out.loc[0, "detail"]
    pending = {"table_eps": {"t": {"eps": ["eps*"], "source": "calibrated"}}}  # not calibrated yet
    for manifest in (None, pending):  # no ε: the largest attacked ε of the rows, said in the detail
        out = check(tmp_path, rows[:5], body, manifest=manifest)
        assert (out.loc[0, "value"], out.loc[0, "verdict"]) == (30.0, "holds")
        assert "no manifest ε for table t" in out.loc[0, "detail"] and "32/255" in out.loc[0, "detail"]


def test_deterministic_output(tmp_path: Path) -> None:
    rows = [row("aq", 50.0), row("maml", 20.0), row("aq", 30.0, k_shot=5), row("maml", 25.0, k_shot=5),
            *_gammas({0.0: [30.0], 1.0: [35.0], 2.0: [40.0]})]
    body = one_claim("robust(aq) - robust(maml)", ">=", 15, 'for_each = "k_shot"') + PEAK.replace(ROBUST, "") \
        .replace('id = "c"', 'id = "p"')
    first = check(tmp_path, rows, body)
    assert first["claim_id"].tolist() == ["c", "c", "p"]
    pd.testing.assert_frame_equal(first, check(tmp_path, rows, body))
    pd.testing.assert_frame_equal(first, check(tmp_path, rows[::-1], body))


def test_bad_claim_files_are_config_errors(tmp_path: Path) -> None:
    for body, message in [(one_claim("robust(maml)", "=>", 0), "op must be"),
                          (one_claim("speed(maml)", "<", 0), "unknown metric"),
                          (one_claim("robust(maml) robust(aq)", "<", 0), "cannot read value"),
                          (one_claim("robust(maml)", "<", 0, "where = { colour = 1 }"), "unknown columns"),
                          (one_claim("robust(maml)", "<", 0, "bogus = 1"), "unknown keys")]:
        with pytest.raises(ConfigError, match=message):
            load_claims(claims_file(tmp_path, body))


def _grid_tables() -> set[str]:
    return {t["name"] for p in (REPO / "advmeta" / "plan" / "grids").glob("*.toml") for t in tomllib.loads(p.read_text())["tables"]}


def test_shipped_claim_files_parse_and_reference_known_names() -> None:
    from advmeta.families import all_methods, config_class

    assert {p.name for p in claims_dir().glob("*.toml")} == {f"{n}.toml" for n in
                                                             ("maml", "adml", "aq", "rmaml", "tafl", "l2l", "gail")}
    claims = load_claims()
    assert len({c["id"] for c in claims}) == len(claims) >= 15
    methods, tables = set(all_methods()), _grid_tables()
    for c in claims:
        assert c["tables"] and set(c["tables"]) <= tables and set(c.get("where_by_table", {})) <= set(c["tables"])
        for term in c["terms"] + (c["den"] or []):
            assert term.where["method"] in methods, (c["id"], term)
            fields = {f.name for f in dataclasses.fields(config_class(term.where["method"]))}
            for key in term.where:
                assert key in (CURVE_KNOWN if term.source == "curves" else KNOWN) or key.removeprefix("hp_") in fields, (
                    c["id"], key)
            if term.source == "curves":
                assert term.quantity in CURVE_QUANTITIES
            else:
                assert all(q.strip() in KNOWN for q in term.quantity.split("/"))
        if c.get("kind") == "peak":
            assert c["along"].removeprefix("hp_") in fields


def test_shipped_claims_on_a_synthetic_paper_sweep(tmp_path: Path) -> None:
    def sur(method: str, k: int, clean: float, adv: float) -> list[dict[str, Any]]:
        base = {"scenario": "surrogate", "support": "clean", "eps": 2 / 255, "eps_str": "2/255", "k_shot": k,
                "attack_params": "{}"}
        return [row(method, clean, **base, query="clean", attack="none"),
                row(method, adv, **base, query="adv", attack="transfer")]

    rows = [r for k in (1, 5) for r in sur("maml", k, 50.0, 30.0) + sur("adml", k, 48.0, 43.0 - 10 * (k == 5))]
    rows += [row(m, acc, attack="worst", eps=2 / 255, eps_str="2/255", attack_params="{}", hp_gamma=gamma)
             for m, acc, gamma in (("maml", 1.0, None), ("aq", 28.0, None), ("tafl", 30.0, 2.0))]
    rows.append(row("tafl", 31.0, eps=2 / 255, eps_str="2/255", hp_gamma=2.0))
    manifest = {"table_eps": {"adml": {"eps": ["2/255", "0.2/255"], "source": "paper"},
                              "tafl": {"eps": ["2/255"], "source": "paper"}}}
    out = evaluate_claims(to_frame(rows), None, manifest).set_index(["claim_id", "group"])
    # drops: maml 20; adml 5 (1-shot) and 15 (5-shot): 5 − 10 = −5 ± 1.6 holds, 15 − 10 = 5 ± 1.6 fails
    assert out.loc[("adml-drop-half-of-maml", "k_shot=1"), "verdict"] == "holds"
    assert out.loc[("adml-drop-half-of-maml", "k_shot=5"), "verdict"] == "fails"
    assert out.loc[("maml-drops-10", "k_shot=5"), "value"] == 20.0
    assert out.loc[("tafl-ge-aq", "k_shot=1"), "verdict"] == "holds"
    assert out.loc[("aq-robust-beats-maml", "k_shot=1"), "verdict"] == "holds"
    assert out.loc[("tafl-gamma-peak", "k_shot=1"), "verdict"] == "inconclusive"
    assert "needs ≥ 3 distinct values" in out.loc[("tafl-gamma-peak", "k_shot=1"), "detail"]
    assert "`tafl` grid" in out.loc[("tafl-gamma-peak", "k_shot=1"), "detail"]


def test_write_claims_from_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    folder.mkdir()
    to_frame([row("maml", 20.0), row("aq", 50.0)]).to_parquet(folder / "summary.parquet")
    (folder / "sweep.json").write_text(json.dumps({"table_eps": {"tafl": {"eps": ["32/255"], "source": "user"}}}))
    paths = write_claims(folder)
    text = paths["markdown"].read_text()
    assert paths["markdown"] == folder / "report" / "claims.md" and "### MAML" in text and "**inconclusive**" in text
    frame = pd.read_parquet(paths["parquet"])
    assert len(frame) == len(evaluate_claims(to_frame([row("maml", 20.0), row("aq", 50.0)])))
    again = write_claims(frame, tmp_path / "out")
    assert again["markdown"].read_text() == text


def test_no_ray_no_torch() -> None:
    code = ("import sys, advmeta.claims as c; c.load_claims(); "
            "assert not {'ray', 'torch', 'advmeta.tune'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_a_search_is_checked_against_the_claims_about_its_own_method(tmp_path: Path) -> None:
    """`advmeta tune tafl` reports the claims that concern TAFL, not every paper's."""
    rows = [row("tafl", 60.0), row("maml", 20.0), row("aq", 50.0)]
    every = evaluate_claims(to_frame(rows))
    mine = evaluate_claims(to_frame(rows), manifest={"method": "tafl", "search": "grid"})
    assert len(mine) < len(every) and len(mine) > 0
    assert mine["claim_id"].str.startswith("tafl").all()
    assert len(evaluate_claims(to_frame(rows), manifest={"grid": "paper-tables", "method": None})) == len(every)


def test_the_leading_table_shows_what_decided_each_verdict_and_the_iterations(tmp_path: Path) -> None:
    """overview.md (the README's copy of a run): each claim's "decided by", each attacked cell's
    iterations and whether its attack converged, was still gaining, or was not checked."""
    from advmeta.report import overview_markdown

    body = one_claim("robust(aq) - robust(maml)", ">=", 15)
    rows = [row("aq", 60.0, attack_iterations=40, attack="worst"), row("maml", 20.0, attack_iterations=80,
                                                                          converged=False, attack="worst"),
            row("aq", 62.0, attack_iterations=10, converged=None)]
    claims = check(tmp_path, [r for r in rows if r["attack"] == "pgd"] + [row("maml", 20.0)], body)
    text = overview_markdown(to_frame(rows), claims, None)
    assert "| decided by |" in text and "100 episodes per row (independent)" in text
    assert "60.0 ± 1.0 [40 it]" in text and "20.0 ± 1.0 [80 it, not converged]" in text
    assert "62.0 ± 1.0 [10 it, not checked]" in text and "not checked*: not escalated" in text
