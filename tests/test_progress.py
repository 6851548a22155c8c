"""The sweep's progress line: counts, the running trials' iteration, plain lines off a terminal."""

from __future__ import annotations

import io
from types import SimpleNamespace

from advmeta.tune.progress import SweepProgress


def _trial(tid: str, method: str, iterations: int) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, status="RUNNING",
                           config={"trial": {"method": method, "train": {"iterations": iterations}}})


def test_the_line_shows_each_running_trial_where_it_is() -> None:
    out = io.StringIO()  # not a terminal: plain lines
    p = SweepProgress("demo", total=3, already_done=0, concurrency=2, stream=out)
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
