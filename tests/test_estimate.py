"""The cost before running (advmeta/plan/estimate.py): a dry run and a run's first lines say how many trials
and about how long on this machine; many trials get a warning; the estimate packs the trials
longest first onto the concurrent slots and counts a calibration still to run."""

from __future__ import annotations

import pytest

from advmeta.plan.budgets import get_budget
from advmeta.plan.estimate import TOO_MANY, estimate, trial_seconds
from advmeta.plan.grids import expand, load_grid

from tests.test_evaluate_model import run_main as run_cli


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code, out, err = run_cli(args, monkeypatch, capsys)
    return code, out + err


def test_the_estimate_packs_trials_longest_first_and_adds_the_calibration() -> None:
    name, data = load_grid("paper-tables")
    specs = expand(name, data, get_budget("quick"), dataset="glyphs", seed=0)
    costs = sorted((trial_seconds(s) for s in specs), reverse=True)
    one = estimate(specs, 1)
    two = estimate(specs, 2)
    assert one.seconds - two.seconds > 0.3 * sum(costs)  # two slots: about half the time
    assert two.seconds >= costs[0] and two.seconds >= sum(costs) / 2
    maml = next(s for s in specs if s.method == "maml")
    cal = estimate(specs, 2, maml, 20)
    assert cal.calibration > 0 and cal.seconds == pytest.approx(two.seconds + cal.calibration)
    assert "18 trials, about" in two.text(2) and "an estimate" in two.text(2)


def test_a_dry_run_says_the_cost_and_warns_of_many_trials(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run_main(["sweep", "--grid", "paper-tables", "--dataset", "glyphs", "--dry-run", "--output",
                           "/tmp/advmeta-estimate-test"], monkeypatch, capsys)
    assert code == 0 and "estimate: 18 trials, about" in text and "of it the ε calibration" in text
    code, text = run_main(["tune", "tafl", "--gamma", "0:5:0.5", "--k", "0.1,1,10", "--dataset", "glyphs",
                           "--dry-run", "--output", "/tmp/advmeta-estimate-test"], monkeypatch, capsys)
    assert code == 0 and "estimate: 33 trials" in text and "warning" not in text
    code, text = run_main(["tune", "tafl", "--gamma", "0:5:0.1", "--dataset", "glyphs", "--dry-run", "--output",
                           "/tmp/advmeta-estimate-test"], monkeypatch, capsys)
    assert code == 0 and f"(more than {TOO_MANY})" in text and "51 trials" in text
