"""Gradient-masking checks: models built to mask gradients trip them, a normally trained CNN passes.

The models are small CNNs trained here on synthetic 5-class images (the strength tests' data,
no real data needed). Three ways of defeating a gradient attack without being robust are
wrapped around the same trained network: input quantisation (its gradient is zero everywhere),
logits scaled so the softmax saturates (the cross-entropy's gradient underflows to zero), and a
random forward (dropout left on at test). Each must trip the checks that catch it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from advmeta.attacks import flatten_tasks, task_generators
from advmeta.checks import CHECKS, CheckSettings, MaskingChecks, zero_gradient_share
from advmeta.converge import escalate_attack
from advmeta.errors import ConfigError
from advmeta.learners import AttackSpec
from advmeta.results import to_frame

from tests.test_attacks_strength import synthetic_and_net

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = "8/255"
SETTINGS = CheckSettings(episodes=4, converge_cap=4, square_queries=300)
PGD = {"steps": 10, "step_size": "auto", "random_start": True}


@pytest.fixture(scope="module")
def data_and_net() -> tuple[Tensor, Tensor, nn.Module]:
    x, y, net = synthetic_and_net(110)
    # 4 "episodes" of 75 test queries (5 classes × 15), the evaluation's (T, B, C, H, W) layout
    xt, yt = x[250:550].view(4, 75, 3, 12, 12), y[250:550].view(4, 75)
    return xt, yt, net


def run_checks(per_sample: Callable[[Tensor], Tensor], qx: Tensor, qy: Tensor,
               settings: CheckSettings = SETTINGS) -> dict[str, dict]:
    """The checks of one white-box PGD evaluation of ``per_sample`` (as evaluate() runs them)."""
    fn = flatten_tasks(per_sample)
    spec = AttackSpec("pgd", EPS, PGD)
    x_adv = spec(fn, qx, qy, task_generators(0, qx.shape[0]))
    with torch.no_grad():
        pgd_ok = fn(x_adv).argmax(-1) == qy
        reference = fn(qx)
    checks = MaskingChecks(settings, n_way=5, eps=EPS, pgd=spec.accepted(), square={"n_queries": 1000},
                           transductive=False)
    pgd_ok, effort = escalate_attack(spec, fn, qx, qy, pgd_ok,
                                     lambda tag, live: [task_generators(7, qx.shape[0])[int(i)] for i in live],
                                     settings.converge_tol, settings.converge_cap)
    checks.escalated("pgd", PGD["steps"], effort, qx.shape[0], 0.0)
    checks.run(lambda: fn, reference, qx, qy, {"pgd": pgd_ok},
               lambda tag: task_generators(abs(hash(tag)) % 1000, qx.shape[0]))
    rows = checks.rows({"trial_id": "t", "method": "cnn"})
    to_frame(rows, "checks")  # the rows fit the documented table
    return {r["check"]: r for r in rows}


def failed(rows: dict[str, dict]) -> set[str]:
    return {name for name, r in rows.items() if r["passed"] is False}


def test_a_normally_trained_cnn_passes_every_check(data_and_net: tuple[Tensor, Tensor, nn.Module]) -> None:
    qx, qy, net = data_and_net
    rows = run_checks(net, qx, qy)
    print({k: (round(v["value"], 4) if v["value"] is not None else None, v["passed"]) for k, v in rows.items()})
    assert list(rows) == list(CHECKS)
    assert not failed(rows), rows
    assert rows["transfer-not-better"]["passed"] is None  # no surrogate given: recorded as not run
    assert rows["large-eps-chance"]["value"] <= 25 and rows["gradients-exist"]["value"] == 0
    assert rows["deterministic"]["value"] == 0 and rows["square-not-better"]["n_episodes"] == 4


def test_input_quantisation_trips_the_gradient_checks(data_and_net: tuple[Tensor, Tensor, nn.Module]) -> None:
    """round() has a zero gradient: PGD sees nothing, yet the model is not robust."""
    qx, qy, net = data_and_net

    def quantised(x: Tensor) -> Tensor:
        return net(torch.round(x * 8) / 8)

    rows = run_checks(quantised, qx, qy)
    print({k: (v["value"], v["passed"]) for k, v in rows.items()})
    assert {"gradients-exist", "large-eps-chance"} <= failed(rows)
    assert rows["gradients-exist"]["value"] == 100


def test_saturated_softmax_trips_the_checks(data_and_net: tuple[Tensor, Tensor, nn.Module]) -> None:
    """Logits × 10⁴: the cross-entropy's gradient underflows on every confident query; Square,
    which reads only the ranking of the scores, is not fooled."""
    qx, qy, net = data_and_net

    def saturated(x: Tensor) -> Tensor:
        return net(x) * 1e4

    rows = run_checks(saturated, qx, qy)
    print({k: (v["value"], v["passed"]) for k, v in rows.items()})
    assert {"gradients-exist", "square-not-better", "large-eps-chance"} <= failed(rows)


def test_a_random_forward_trips_determinism(data_and_net: tuple[Tensor, Tensor, nn.Module]) -> None:
    qx, qy, net = data_and_net
    drop = nn.Dropout(0.2).train()

    def noisy(x: Tensor) -> Tensor:
        return net(drop(x))

    torch.manual_seed(0)
    rows = run_checks(noisy, qx, qy, CheckSettings(episodes=4, converge_cap=2, square_queries=5))
    assert "deterministic" in failed(rows)


def test_zero_gradient_share_counts_per_episode() -> None:
    x = torch.rand(2, 3, 1, 4, 4)
    y = torch.zeros(2, 3, dtype=torch.long)

    def fn(z: Tensor) -> Tensor:  # episode 0 ignores its input, episode 1 reads it
        w = torch.tensor([0.0, 1.0]).view(2, 1)
        s = z.flatten(2).sum(-1) * w
        return torch.stack([s, -s], -1)

    assert zero_gradient_share(fn, x, y).tolist() == [100.0, 0.0]


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="episodes must be an integer >= 1"):
        CheckSettings(episodes=0)
    with pytest.raises(ConfigError, match="square_queries"):
        CheckSettings(square_queries=-3)
    with pytest.raises(ConfigError, match="converge_tol"):
        CheckSettings(converge_tol=float("nan"))


def test_grid_checks_setting_is_validated_and_reaches_the_protocol() -> None:
    from advmeta.plan.budgets import get_budget
    from advmeta.families.meta import protocols
    from advmeta.families import RunContext
    from advmeta.plan.grids import expand

    def grid(checks: object = None) -> dict:
        ev = {"scenario": "whitebox", "attacks": ["pgd"], "eps": ["8/255"]}
        if checks is not None:
            ev["checks"] = checks
        return {"tables": [{"name": "t", "methods": ["maml"], "k_shot": [1], "evals": [ev]}]}

    smoke = get_budget("smoke")
    (spec,) = expand("t", grid(), smoke, dataset="glyphs", seed=0)
    (proto,) = protocols(spec, RunContext(sweep_dir="x"))
    assert proto.checks == CheckSettings(**dict(smoke.checks))  # the budget sizes them
    (spec,) = expand("t", grid({"episodes": 3}), smoke, dataset="glyphs", seed=0)
    assert protocols(spec, RunContext(sweep_dir="x"))[0].checks.episodes == 3
    (spec,) = expand("t", grid(False), smoke, dataset="glyphs", seed=0)
    assert protocols(spec, RunContext(sweep_dir="x"))[0].checks is None
    with pytest.raises(ConfigError, match=r"checks: unknown setting\(s\) \['colour'\]"):
        expand("t", grid({"colour": 1}), smoke, dataset="glyphs", seed=0)
    with pytest.raises(ConfigError, match="checks: episodes must be"):
        expand("t", grid({"episodes": 0}), smoke, dataset="glyphs", seed=0)


def test_report_flags_the_suspected_trials(tmp_path: Path) -> None:
    from advmeta.report import masking_section, suspected_trials

    rows = []
    for tid, grad_ok in (("a", True), ("b", False)):
        for name in CHECKS:
            passed = None if name == "transfer-not-better" else (grad_ok if name == "gradients-exist" else True)
            rows.append({"trial_id": tid, "method": "maml", "eps_str": "8/255", "check": name,
                         "value": None if passed is None else 1.0, "threshold": 1.0, "passed": passed,
                         "n_episodes": 4, "detail": f"about {name}"})
    frame = to_frame(rows, "checks")
    assert suspected_trials(frame) == {"b"}
    text = "\n".join(masking_section(frame))
    assert "| b | maml | 8/255 |" in text and "**masking suspected** (gradients-exist)" in text
    assert text.count("**masking suspected** (") == 1 and "| – |" in text
    # the two diagnoses are told apart, and a flagged trial is named by its method and settings
    from advmeta.report import flag_lines

    stuck = frame.assign(passed=frame.passed.where(frame.check != "converged", frame.trial_id.eq("a")))
    lines = flag_lines(stuck, {"a": "tafl (gamma=2)", "b": "maml"})
    assert lines[0].startswith("not converged in 1 trial(s): maml (converged)")
    assert lines[1].startswith("masking suspected in 1 trial(s): maml at 8/255 (gradients-exist)")
    assert "**not converged** (converged)" in "\n".join(masking_section(stuck))
    assert pd.isna(frame.loc[frame.check == "transfer-not-better", "passed"]).all()


def test_a_value_at_the_threshold_passes_despite_rounding() -> None:
    """Accuracies are multiples of 100/75: a value of them is 25 points only up to rounding."""
    checks = MaskingChecks(CheckSettings(), n_way=5, eps=EPS, pgd={"steps": 10}, square={}, transductive=False)
    per_episode = torch.tensor([25.000000000000004], dtype=torch.float64)  # what a run produced
    checks._add("large-eps-chance", per_episode, 0.0)
    row = next(r for r in checks.rows({}) if r["check"] == "large-eps-chance")
    assert abs(row["value"] - 25.0) < 1e-12 and row["passed"] is True and row["diagnosis"] == ""
    checks.series.clear()
    checks._add("large-eps-chance", torch.tensor([25.1], dtype=torch.float64), 0.0)
    row = next(r for r in checks.rows({}) if r["check"] == "large-eps-chance")
    assert row["passed"] is False and row["diagnosis"] == "masking suspected"
