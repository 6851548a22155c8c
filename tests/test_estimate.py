"""The cost before running (advmeta/plan/estimate.py): a dry run and a run's first lines say how many trials
and about how long on this machine; many trials get a warning; the estimate packs the trials
longest first onto the concurrent slots and counts a calibration still to run."""

from __future__ import annotations

from pathlib import Path

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


def test_the_estimate_leaves_out_the_trials_a_folder_holds_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A re-run says what it will run: the finished trials of its folder are neither run nor estimated."""
    from advmeta.ledger import Ledger
    from advmeta.plan.sweeps import estimate_of, say_estimate

    grid, data = load_grid("tafl")
    specs = expand(grid, data, get_budget("smoke"), dataset="glyphs", seed=0)
    done = {specs[0].trial_id}
    monkeypatch.setattr(Ledger, "status_of", lambda self, tid: "ok" if tid in done else "pending")
    fresh = estimate_of(specs, 1, folder=str(tmp_path / "new"))  # no folder yet: every trial
    rerun = estimate_of(specs, 1, folder=str(tmp_path))
    assert (fresh.trials, rerun.trials) == (len(specs), len(specs) - 1) and rerun.seconds < fresh.seconds
    say_estimate(rerun, len(specs), str(tmp_path))
    assert f"the other 1 of its {len(specs)} trials are done in {tmp_path}" in capsys.readouterr().err
    done.update(s.trial_id for s in specs)
    nothing = estimate_of(specs, 1, folder=str(tmp_path))
    assert nothing.seconds == 0.0
    say_estimate(nothing, len(specs), str(tmp_path))
    assert f"nothing to run, the {len(specs)} trials are done" in capsys.readouterr().err
