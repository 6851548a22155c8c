"""ε calibration: the smallest rung below the threshold, by bisection or a linear walk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from advmeta.calibration import search as cal_mod
from advmeta.calibration.search import Calibration, calibrate, check_ladder
from advmeta.errors import ConfigError
from advmeta.evaluate import Evaluation

LADDER = ("2/255", "4/255", "8/255", "16/255", "32/255", "64/255")


def _fake_evaluate(curve: dict[str, float], calls: list[str]) -> Any:
    """An ``evaluate`` whose PGD accuracy at each ε is ``curve[ε]`` (clean 90 %)."""

    def evaluate(checkpoint: Any, proto: Any, progress: bool = False) -> Evaluation:
        eps = proto.eps[0].text  # an Epsilon, named by its k/255
        calls.append(eps)
        assert proto.checks is None  # the calibration only reads a curve: no masking checks
        base = {"finetune_step": 1, "acc_ci95": 1.0}
        return Evaluation([{**base, "attack": "none", "acc": 90.0}, {**base, "attack": "pgd", "acc": curve[eps]}], [], [])

    return evaluate


@pytest.mark.parametrize("search", ["bisect", "linear"])
@pytest.mark.parametrize("below_from, expected", [(0, "2/255"), (3, "16/255"), (4, "32/255"), (5, "64/255")])
def test_picks_the_first_rung_below(monkeypatch: pytest.MonkeyPatch, search: str, below_from: int,
                                    expected: str) -> None:
    accs = [80.0 - 5 * i if i < below_from else 39.0 - i for i in range(len(LADDER))]
    calls: list[str] = []
    monkeypatch.setattr("advmeta.evaluate.evaluate", _fake_evaluate(dict(zip(LADDER, accs)), calls))
    out = calibrate("unused.pt", LADDER, 40.0, n_episodes=3, search=search)
    assert out.eps == expected and out.below
    assert [p.eps for p in out.curve] == [e for e in LADDER if e in calls]  # in ladder order
    if search == "bisect":
        assert len(calls) <= 3  # ⌈log2 6⌉ evaluations, not six
    else:
        assert calls == list(LADDER[:below_from + 1])


def test_no_rung_below_uses_the_top(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr("advmeta.evaluate.evaluate", _fake_evaluate({e: 60.0 for e in LADDER}, calls))
    out = calibrate("unused.pt", LADDER, 40.0, n_episodes=3)
    assert out.eps == "64/255" and not out.below
    assert Calibration.from_dict(out.to_dict()) == out


def test_bad_ladders_are_errors() -> None:
    for ladder in ([], ["8/255", "4/255"], ["0/255", "2/255"], ["banana"]):
        with pytest.raises(ConfigError):
            check_ladder(ladder)
    assert check_ladder(["2/255", 8 / 255]) == ("2/255", "8/255")


def test_tiny_model_bisection_matches_the_full_curve(tmp_path: Path, one_thread: None) -> None:
    """On a real (tiny, briefly trained) MAML, bisection picks the rung the full curve says."""
    from advmeta.train import TrainConfig, train

    cfg = TrainConfig(method="maml", hparams={"inner_lr": 0.4, "inner_steps": 1, "test_inner_steps": 1},
                      dataset="glyphs", image_size=16, width=8, q_query=3, meta_batch=2, iterations=8, val_every=0,
                      val_episodes=2, checkpoint_every=8, device="cpu", seed=0)
    ckpt, _ = train(cfg, tmp_path / "maml", progress=False)
    ladder = ("2/255", "8/255", "32/255", "128/255")
    full = calibrate(ckpt, ladder, threshold=-1.0, n_episodes=4, steps=3, q_query=3, device="cpu", search="linear")
    accs = [p.acc for p in full.curve]
    assert len(accs) == 4 and accs[-1] <= accs[0]
    # A threshold just above the curve's value at 32/255 (and below the rungs before it when
    # they are higher) makes the expected rung the first one under it.
    threshold = accs[2] + 0.5
    expected = next(e for e, a in zip(ladder, accs) if a < threshold)
    for search in ("bisect", "linear"):
        got = calibrate(ckpt, ladder, threshold=threshold, n_episodes=4, steps=3, q_query=3, device="cpu",
                        search=search)
        monotone = all(b <= a for a, b in zip(accs, accs[1:]))
        if search == "linear" or monotone:
            assert got.eps == expected
        assert {p.eps: p.acc for p in got.curve}.items() <= {p.eps: p.acc for p in full.curve}.items()


def test_module_exports_the_rule() -> None:
    assert cal_mod.LADDER[0] == "2/255" and cal_mod.THRESHOLD == 40.0


def _fake_surrogate_evaluate(drops: dict[str, list[float]], calls: list[Any]) -> Any:
    """An ``evaluate`` whose surrogate episodes lose ``drops[ε][i]`` points on episode i (clean 90 %)."""

    def evaluate(checkpoint: Any, proto: Any, progress: bool = False) -> Evaluation:
        calls.append(proto)
        eps_rows = []
        for eps in proto.surrogate_eps:
            for i, d in enumerate(drops[eps.text]):
                base = {"scenario": "surrogate", "support": "clean", "eps_str": eps.text, "episode_index": i}
                eps_rows += [{**base, "query": "clean", "acc": 90.0}, {**base, "query": "adv", "acc": 90.0 - d}]
        return Evaluation([], eps_rows, [])

    return evaluate


@pytest.mark.parametrize("first_hit, expected", [(0, "32/255"), (2, "48/255"), (4, "64/255"), (None, "64/255")])
def test_surrogate_rule_picks_the_first_rung_with_the_drop(monkeypatch: pytest.MonkeyPatch, first_hit: int | None,
                                                          expected: str) -> None:
    rungs = cal_mod.surrogate_rungs("32/255")
    assert rungs == ("32/255", "40/255", "48/255", "56/255", "64/255")
    # Paired drops: a rung's mean is 6 points below it and 12 from `first_hit` on (two episodes).
    drops = {e: ([11.0, 13.0] if first_hit is not None and i >= first_hit else [5.0, 7.0]) for i, e in enumerate(rungs)}
    calls: list[Any] = []
    monkeypatch.setattr("advmeta.evaluate.evaluate", _fake_surrogate_evaluate(drops, calls))
    out = cal_mod.calibrate_surrogate("unused.pt", "32/255", drop=10.0, n_episodes=2)
    assert out.eps == expected and out.reached == (first_hit is not None)
    assert len(calls) == 1 and tuple(map(str, calls[0].surrogate_eps)) == rungs and calls[0].split == "val"  # one evaluation
    assert calls[0].surrogate_supports == ("clean",)
    assert [round(p.drop, 6) for p in out.curve] == [12.0 if first_hit is not None and i >= first_hit else 6.0
                                                      for i in range(5)]
    assert all(p.clean_acc == 90.0 for p in out.curve) and all(p.drop_ci95 > 0 for p in out.curve)
    assert cal_mod.SurrogateCalibration.from_dict(out.to_dict()) == out


def test_surrogate_rule_needs_a_positive_start_and_increasing_factors() -> None:
    with pytest.raises(ConfigError):
        cal_mod.surrogate_rungs("0/255")
    with pytest.raises(ConfigError):
        cal_mod.surrogate_rungs("8/255", (1.0, 0.5))
    with pytest.raises(ConfigError):
        cal_mod.surrogate_rungs("8/255", (2.0, 3.0))
    assert cal_mod.surrogate_rungs("8/255", (1.0, 2.0)) == ("8/255", "16/255")
