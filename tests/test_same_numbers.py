"""Same settings, same numbers (issue 25): a trial gives the numbers it gives alone when it runs
after other trials in the same process (a sweep's Ray workers run trials one after another) and
when it is interrupted and resumed from its checkpoint (Tune's retry, ``sweep --resume``).

Each trial runs through its family's ``run`` with the context the runner gives it (one thread),
on the built-in glyphs (no data needed), in a process whose ``OMP_NUM_THREADS`` is not the
trial's thread count (as in a worker started with another count). "The numbers" are every result
row (accuracies, losses), the final metrics and the learning curve (times left out), and a hash of
every tensor of the final checkpoint (networks, optimisers, generators) — a change in the last bit
of one weight fails the test. Found this way: a meta-learner's trial set the process's torch
threads from ``OMP_NUM_THREADS`` (or every CPU), and an L2L trial run after it in the same
process trained with that count, to other weights than alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from advmeta.plan.budgets import get_budget
from advmeta.families import RunContext, TrialOutput, get_family
from advmeta.plan.space import tune_trials
from advmeta.plan.trial import TrialSpec

pytestmark = pytest.mark.usefixtures("one_thread")

# smoke, with two epochs for the L2L trainers so that an L2L trial has a checkpoint to resume from
SMOKE = dataclasses.replace(get_budget("smoke"), l2l_epochs=2)
# smaller still, for the default test run
TINY = dataclasses.replace(SMOKE, iterations=4, checkpoint_every=2, val_every=2, val_episodes=1, test_episodes=2,
                           attack_steps=1, l2l_num_classes=3, l2l_train_per_class=4, l2l_test_images=6,
                           checks=(("episodes", 1), ("converge_cap", 1), ("square_queries", 10)))


class _Stop(Exception):
    """The trial's process dies (here: right after the trial's first checkpoint is written)."""


def _spec(method: str, budget: Any = SMOKE) -> TrialSpec:
    (spec,) = tune_trials(method, {}, budget, dataset="glyphs", seed=0, attacks=("pgd",))
    return spec


def _tensors_hash(work: Path) -> str:
    """SHA-256 of every tensor of the checkpoint's trainer state (networks, optimisers, generators), in key order."""
    from advmeta.checkpoint import load

    state = load(work / "checkpoint.pt")["state"]
    h = hashlib.sha256()

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            h.update(prefix.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(value, dict):
            for k in sorted(value, key=str):
                add(f"{prefix}/{k}", value[k])
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                add(f"{prefix}/{i}", v)

    add("", state)
    return h.hexdigest()


def _timeless(d: dict[str, Any]) -> dict[str, Any]:
    """The values that are numbers of the run: wall times and dates left out, NaN made comparable."""
    out = {}
    for k, v in d.items():
        if "seconds" in k or k in ("created_at", "device"):
            continue
        out[k] = "nan" if isinstance(v, float) and math.isnan(v) else v
    return out


def _numbers(out: TrialOutput, work: Path) -> dict[str, Any]:
    return {"rows": [_timeless(r) for r in out.rows], "episodes": [_timeless(r) for r in out.episodes],
            "final": _timeless(dict(out.final)), "curves": [_timeless(r) for r in out.curves],
            "checkpoint": _tensors_hash(work)}


def _run(spec: TrialSpec, work: Path, report: Callable[[dict[str, Any], Path | None], None] | None = None
         ) -> dict[str, Any]:
    ctx = RunContext(sweep_dir=str(work.parent), work_dir=str(work), device="cpu", threads=1)
    out = TrialOutput(*get_family(spec.family).run(spec, ctx, report or (lambda m, p: None)))
    return _numbers(out, work)


def _interrupted_then_resumed(spec: TrialSpec, work: Path) -> dict[str, Any]:
    def die_at_first_checkpoint(metrics: dict[str, Any], path: Path | None) -> None:
        if path is not None:
            raise _Stop

    with pytest.raises(_Stop):
        _run(spec, work, die_at_first_checkpoint)
    return _run(spec, work)


def _check(tmp_path: Path, method: str, before: tuple[str, ...], budget: Any) -> None:
    spec = _spec(method, budget)
    alone = _run(spec, tmp_path / "alone")
    for other in before:  # what a reused worker ran before it
        _run(_spec(other, budget), tmp_path / other)
    assert _run(spec, tmp_path / "after") == alone, f"{method} after {', '.join(before)} in the same process"
    assert _interrupted_then_resumed(spec, tmp_path / "resumed") == alone, f"{method} resumed from its checkpoint"


@pytest.fixture(autouse=True)
def _worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker whose OMP_NUM_THREADS (2) is not its trials' thread count (1)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")


@pytest.mark.parametrize("method,before", [("grad-l2l", ("maml",)), ("maml", ("grad-l2l",))])
def test_a_trial_gives_its_own_numbers_after_another_trial_and_after_a_restart(
        tmp_path: Path, method: str, before: tuple[str, ...]) -> None:
    _check(tmp_path, method, before, TINY)


@pytest.mark.slow
@pytest.mark.parametrize("method,before", [("grad-l2l", ("pgm", "maml")), ("maml", ("grad-l2l", "pgm"))])
def test_at_smoke_a_trial_gives_its_own_numbers_after_other_trials_and_after_a_restart(
        tmp_path: Path, method: str, before: tuple[str, ...]) -> None:
    _check(tmp_path, method, before, SMOKE)
