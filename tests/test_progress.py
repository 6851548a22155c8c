"""The sweep's progress line: counts, the running trials' iteration, plain lines off a terminal."""

from __future__ import annotations

import io
from types import SimpleNamespace

from advmeta.tune.progress import SweepProgress


def _trial(tid: str, method: str, iterations: int) -> SimpleNamespace:
    SPECS[tid] = SimpleNamespace(method=method, train={"iterations": iterations})  # what the line reads of a spec
    return SimpleNamespace(trial_id=tid, status="RUNNING", config={"trial": {"id": tid}})


SPECS: dict[str, SimpleNamespace] = {}
"""Trial id → a stand-in TrialSpec (the runner gives SweepProgress its specs by id)."""


def test_the_line_shows_each_running_trial_where_it_is() -> None:
    out = io.StringIO()  # not a terminal: plain lines
    p = SweepProgress("demo", total=3, already_done=0, concurrency=2, stream=out, specs=SPECS)
    a, b = _trial("a", "adml", 600), _trial("b", "tafl", 600)
    p.on_trial_start(0, [a, b], a)
    p.on_trial_start(0, [a, b], b)
    p.on_trial_result(0, [a, b], a, {"iteration": 400, "trial_id": "a"})
    line = p.line()
    assert "0/3 done, 2 running, 0 failed" in line
    assert "[adml 400/600; tafl 0/600]" in line
    p.on_trial_complete(0, [a, b], a)
    assert "adml" not in p.line() and "1/3 done" in p.line()
    assert out.getvalue().count("\n") >= 2  # a plain line when trials started and when one finished


def test_the_eta_counts_down_between_finishes_and_says_evaluating(monkeypatch) -> None:  # noqa: ANN001
    import advmeta.tune.progress as progress

    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    p = SweepProgress("demo", total=4, already_done=0, concurrency=2, stream=io.StringIO(), specs=SPECS)
    a, b = _trial("a", "maml", 600), _trial("b", "aq", 600)
    p.on_trial_start(0, [a, b], a)
    p.on_trial_start(0, [a, b], b)
    assert "ETA" not in p.line()  # nothing trained yet: no pace to go by
    clock[0] += 100
    p.on_trial_result(0, [a, b], a, {"iteration": 300})
    p.on_trial_result(0, [a, b], b, {"iteration": 300})
    # paced at 200 s a trial from training alone, a lower bound: 2 × 100 s left + 2 × 200 s, over 2 slots
    assert ", ETA ≥ 5m00s" in p.line()
    clock[0] += 100
    p.on_trial_result(0, [a, b], a, {"iteration": 600})
    assert "[maml evaluating; aq 300/600]" in p.line()
    clock[0] += 100
    p.on_trial_complete(0, [a, b], a)  # a took 300 s
    c = _trial("c", "tafl", 600)
    p.on_trial_start(0, [b, c], c)
    # b ran 300 of its expected 300 s (5 % left: 15 s), c and d 300 s each: 615 s over 2 slots
    assert ", ETA 5m08s" in p.line()
    clock[0] += 60
    assert ", ETA 4m38s" in p.line()  # counts down with the clock, no finish needed
