"""Claims decided on more paired episodes (tune/extend.py): which rows get a block, and how a
block's episodes are merged into a trial's rows (advmeta.results.add_blocks)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from advmeta.results import add_blocks, to_frame
from advmeta.stats import mean_ci95
from advmeta.tune.extend import plan_blocks

KEY = {"scenario": "whitebox", "support": "clean", "query": "adv", "attack": "pgd",
       "attack_params": json.dumps({"steps": 10}), "eps_str": "32/255", "finetune_step": 1}


def summary_row(tid: str, n: int, acc: float, **kw: object) -> dict[str, object]:
    return {"trial_id": tid, "status": "ok", "method": tid, **KEY, "n_episodes": n, "acc": acc, "acc_ci95": 1.0,
            "loss": 1.0, "eval_seconds": 2.0, "attack_iterations": 20, "attack_restarts": 2, "converged": True, **kw}


def episode_rows(tid: str, accs: list[float], start: int = 0) -> list[dict[str, object]]:
    return [{"trial_id": tid, **KEY, "episode_index": start + i, "acc": a, "loss": 0.5} for i, a in enumerate(accs)]


def test_a_block_is_merged_into_its_row_over_all_episodes() -> None:
    first, more = [50.0, 60.0, 70.0], [40.0, 80.0, 55.0]
    summary = to_frame([summary_row("t", 3, float(np.mean(first))),
                        {**summary_row("t", 3, 90.0), "attack": "none", "attack_params": "{}"}])
    episodes = to_frame(episode_rows("t", first), "episodes")
    block = to_frame([summary_row("t", 3, float(np.mean(more)), attack_iterations=40, attack_restarts=3,
                                  converged=False, eval_seconds=5.0)])
    out, eps = add_blocks(summary, episodes, block, to_frame(episode_rows("t", more, start=3), "episodes"))
    mean, ci = mean_ci95(first + more)
    pgd = out[out.attack == "pgd"].iloc[0]
    assert pgd.n_episodes == 6 and pgd.acc == pytest.approx(mean) and pgd.acc_ci95 == pytest.approx(ci)
    assert pgd.attack_iterations == 40 and pgd.attack_restarts == 3 and not bool(pgd.converged)
    assert pgd.eval_seconds == pytest.approx(7.0) and len(eps) == 6
    assert out[out.attack == "none"].iloc[0].n_episodes == 3  # a row no block extends is kept as it is
    same, _ = add_blocks(summary, episodes, to_frame([]), to_frame([], "episodes"))
    assert same.equals(summary)


def claims_frame(verdict: str, ci_method: str = "paired", reliable: bool = True, n: int = 20) -> pd.DataFrame:
    keys = [{"trial_id": t, **KEY} for t in ("a", "b")]
    return pd.DataFrame([{"claim_id": "c", "verdict": verdict, "reliable": reliable, "ci_method": ci_method,
                          "n_episodes": n, "row_keys": json.dumps(keys)}])


def test_only_undecided_reliable_paired_claims_below_the_cap_get_blocks() -> None:
    summary = to_frame([summary_row("a", 20, 50.0), summary_row("b", 20, 40.0)])
    blocks = plan_blocks(claims_frame("inconclusive"), summary, looks=3, extendable=["a", "b"])
    assert [(b.trial_id, b.start, b.count, b.claims) for b in blocks] == [("a", 20, 20, ("c",)), ("b", 20, 20, ("c",))]
    assert blocks[0].keys[0]["attack"] == "pgd"
    for claims in (claims_frame("holds"), claims_frame("inconclusive", reliable=False),
                   claims_frame("inconclusive", ci_method="independent")):
        assert plan_blocks(claims, summary, 3, ["a", "b"]) == []
    assert plan_blocks(claims_frame("inconclusive"), summary, 1, ["a", "b"]) == []  # one look: never
    assert plan_blocks(claims_frame("inconclusive"), summary, 3, ["a"]) == []  # b's family cannot extend
    # at the cap (looks × the first evaluation's episodes) no more blocks
    grown = summary.assign(n_episodes=60, first_episodes=20)
    assert plan_blocks(claims_frame("inconclusive", n=60), grown, 3, ["a", "b"]) == []
    mid = summary.assign(n_episodes=40, first_episodes=20)
    assert [b.start for b in plan_blocks(claims_frame("inconclusive", n=40), mid, 3, ["a", "b"])] == [40, 40]
    assert not math.isnan(float(mid.acc.iloc[0]))


def test_the_blocks_progress_line_counts_runs_longest_first_and_gives_an_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    """The blocks phase shows where it is: blocks done, the running ones (longest first, as many as
    the trials' slots) and an ETA from their expected seconds."""
    import advmeta.tune.extend as extend

    clock = [1000.0]
    monkeypatch.setattr(extend.time, "monotonic", lambda: clock[0])
    meter = extend.BlockProgress(2, [100.0, 300.0, 200.0], ["maml", "tafl", "aq"], slots=2)
    assert meter.order == [1, 2, 0]
    assert meter.line() == "claims: look 2: 0/3 block(s) done, 0s elapsed, ETA 5m00s [tafl; aq]"
    clock[0] += 200.0  # aq (200 s) finishes; maml starts; tafl has 100 s left
    meter.finished(2)
    assert meter.line() == "claims: look 2: 1/3 block(s) done, 3m20s elapsed, ETA 1m40s [tafl; maml]"
    clock[0] += 500.0  # both overran: each is counted at 5 % of its expected seconds
    assert meter.line().endswith("ETA 10s [tafl; maml]")
    meter.finished(1)
    meter.finished(0)
    assert meter.line() == "claims: look 2: 3/3 block(s) done, 11m40s elapsed"
