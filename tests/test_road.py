"""The roads of ε and γ from the command line to the tensor, traced as the code runs
(``python -m advmeta.benchmarks.road``): they never come back to cli/, and they do not grow unnoticed."""

from __future__ import annotations

from pathlib import Path

import pytest

from advmeta.benchmarks.road import tally, trace

# The counts `python -m advmeta.benchmarks.road` prints today: a change that lengthens a road fails here
# (shorten the road, or raise the number and say why in the change).
MOST = {"eps": 15, "gamma": 10}
SPINE = {
    "eps": ["cli/sweep.py", "tune/runner.py", "advmeta/plan/grids.py", "advmeta/plan/space.py", "advmeta/eps.py",
            "advmeta/plan/trial.py", "advmeta/families/meta.py", "advmeta/evaluate.py", "advmeta/attacks/spec.py",
            "advmeta/attacks/pgd.py", "advmeta/attacks/_core.py"],
    "gamma": ["cli/tune_cmd.py", "tune/runner.py", "advmeta/plan/space.py", "advmeta/hparams.py",
              "advmeta/plan/trial.py", "advmeta/families/meta.py", "advmeta/train.py", "advmeta/learners/tafl.py"],
}


@pytest.mark.parametrize("value", ["eps", "gamma"])
def test_the_road_to_the_tensor(value: str, tmp_path: Path) -> None:
    road = trace(value, "glyphs", str(tmp_path))
    assert road.order == ["parse", "trial", "tensor"], road.order  # each moment seen, in order
    t = tally(road)
    spine = iter(t.modules)
    assert all(m in spine for m in SPINE[value]), t.modules  # the spine, in this order
    assert len(t.modules) <= MOST[value], t.modules
    # after the command handed the request on, the value never comes back to cli/
    after = road.carried[road.at["parse"]:]
    assert not [m for m, _, _ in after if m.startswith("cli/")], after
    assert not [m for m in road.stacks["tensor"] if m.strip("()").startswith("cli/")]
    end = {"eps": "advmeta/attacks/_core.py", "gamma": "advmeta/learners/tafl.py"}[value]
    assert road.stacks["tensor"][-1] == end
