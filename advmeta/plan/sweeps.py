"""What a grid's plan and a search's plan share: the :class:`Plan` (the trials and the facts the
sweep's manifest records), the dataset chosen, the estimate said before running, the standard
episodes checked, and a plan read back for ``--resume``.

The two planners are :func:`advmeta.plan.grids.plan_grid` (a :class:`~advmeta.plan.grids.GridRequest`)
and :func:`advmeta.plan.space.plan_search` (a :class:`~advmeta.plan.space.SearchRequest`);
:func:`advmeta.tune.runner.run` runs what they plan.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from advmeta.errors import ConfigError
from advmeta.ledger import Ledger
from advmeta.plan.trial import TrialSpec

if TYPE_CHECKING:
    from advmeta.plan.estimate import Estimate


@dataclass
class Plan:
    """What a sweep will run: its ``name``, ``trials`` and the ``manifest`` facts (budget, dataset,
    seed, the tables' ε, the calibration, the estimate). ``calibrated_now``: planning calibrated ε
    (the run's wall time includes it). ``claim_looks``: the planned looks of the grid's claims
    (:class:`~advmeta.plan.budgets.Budget`; 1 for a search, which tests no claim)."""

    name: str
    trials: list[TrialSpec]
    manifest: dict[str, Any] = field(default_factory=dict)
    calibrated_now: bool = False
    claim_looks: int = 1


def resume_plan(folder: str, keys: Sequence[str]) -> Plan:
    """The plan recorded in ``folder`` (``--resume``): its trials, and the manifest's ``keys``.

    Raises:
        ConfigError: no sweep was started there.
    """
    from advmeta.plan.budgets import get_budget

    name, specs, manifest = resumed_specs(folder)
    looks = get_budget(manifest["budget"]).claim_looks if "grid" in manifest and "budget" in manifest else 1
    return Plan(name, specs, {**{k: manifest[k] for k in keys if k in manifest}, "resumed": True}, claim_looks=looks)


def resolve_dataset(dataset: str | None, data_root: str | None) -> str:
    """The dataset named, or the default one (first real dataset found, else glyphs — said aloud).

    Raises:
        ConfigError: an unknown dataset name.
    """
    from advmeta.data import dataset_names, resolve_default_dataset

    if dataset is None or dataset == "auto":
        name, announcement = resolve_default_dataset(data_root)
        if announcement:
            print(f"note: {announcement}", file=sys.stderr)
        else:
            print(f"dataset: {name} (the first real dataset found; choose another with --dataset)", file=sys.stderr)
        return name
    if dataset not in dataset_names():
        raise ConfigError(f"unknown dataset {dataset!r}; known: {', '.join(dataset_names())}")
    return dataset


def resumed_specs(folder: str) -> tuple[str, list[TrialSpec], dict[str, Any]]:
    """The trials of the sweep recorded in ``folder`` (``--resume``).

    Raises:
        ConfigError: no sweep was started there.
    """
    manifest = Ledger(folder).read_manifest()
    if manifest is None:
        raise ConfigError(f"nothing to resume: no sweep.json in {folder}")
    specs = [TrialSpec.from_dict(t) for t in manifest["trials"]]
    return str(manifest.get("name", "sweep")), specs, manifest


def still_to_run(specs: Sequence[TrialSpec], folder: str = "") -> list[TrialSpec]:
    """The trials a run of the sweep in ``folder`` will run (:meth:`Ledger.to_run`; all of them for a
    new folder, or none given)."""
    if not folder or "://" in folder or not os.path.isdir(folder):
        return list(specs)
    return Ledger(folder).to_run(specs)


def estimate_of(specs: Sequence[TrialSpec], cpus_per_trial: float | None, calibration: TrialSpec | None = None,
                calibration_episodes: int = 20, folder: str = "") -> Estimate:
    """The estimated wall time on this machine of what a run will do (:mod:`advmeta.plan.estimate`):
    the trials still to run in ``folder`` (:func:`still_to_run`), after the calibration when it is due."""
    from advmeta.plan.estimate import estimate

    slots = max(1, int((os.cpu_count() or 1) // max(1.0, float(cpus_per_trial or 1))))
    return estimate(still_to_run(specs, folder), slots, calibration, calibration_episodes)


def say_estimate(found: Estimate, total: int, folder: str = "", looks: int = 1) -> None:
    """Print ``found`` (:func:`estimate_of` of a sweep's ``total`` trials; stderr), and a warning when
    the sweep has many trials. ``looks``: the claims' planned looks (their further blocks, after the
    trials, are not in the estimate); ``folder``: the sweep's, whose finished trials are not run again
    (nor estimated)."""
    from advmeta.plan.estimate import TOO_MANY

    if found.trials == 0 and not found.calibration:
        print(f"estimate: nothing to run, the {total} trials are done in {folder}", file=sys.stderr)
        return
    text = found.text(os.cpu_count() or 1)
    if found.trials < total:
        text += f"; the other {total - found.trials} of its {total} trials are done in {folder}"
    if looks > 1:
        text += (f"; not in it: up to {looks - 1} further block(s) of episodes for the claims still undecided "
                 "after the trials")
    print(f"estimate: {text}", file=sys.stderr)
    if total > TOO_MANY:
        print(f"warning: {total} trials (more than {TOO_MANY}); narrow the ranges or lists, or use --samples with "
              "--search random, if that is not what you meant", file=sys.stderr)


def check_episodes(specs: Sequence[TrialSpec], sources: Sequence[str],
                   recorded: dict[str, str] | None = None) -> dict[str, str]:
    """``--episodes``: every trial's test evaluation has a manifest of its dataset and shape.

    Args:
        specs: the sweep's trials.
        sources: manifest files or built-in names.
        recorded: on ``--resume``, the hashes the sweep started with (a changed file is an error).

    Returns:
        Each source's hash (recorded in ``sweep.json``); empty without sources.

    Raises:
        ConfigError: an unreadable manifest, a trial whose dataset and shape no manifest has, or
            (resume) a manifest that changed. Trials of families without few-shot episodes (L2L,
            GAIL) are left as they are (said on stderr).
    """
    from advmeta.data.manifest import read_manifest
    from advmeta.families import RunContext, get_family

    if not sources:
        return {}
    hashes = {}
    for s in sources:
        m = read_manifest(s)
        if recorded is not None and recorded.get(s) != m.hash:
            raise ConfigError(f"--resume: the episodes manifest {s} is not the one the sweep started with "
                              f"(sha256 {str(recorded.get(s))[:16]}…, now {m.hash[:16]}…)")
        hashes[s] = m.hash
    ctx = RunContext(sweep_dir="", episodes=tuple(sources))
    used: dict[str, int] = {}
    # a family whose trials read few-shot episodes says which (its ``episodes_kwargs``)
    kwargs_of = {s.family: getattr(get_family(s.family), "episodes_kwargs", None) for s in specs}
    other = sorted({f"{s.method} ({s.family})" for s in specs if kwargs_of[s.family] is None})
    if other:
        print(f"episodes: not episodic, --episodes does not apply to: {', '.join(other)}", file=sys.stderr)
    for spec in specs:
        episodes_kwargs = kwargs_of[spec.family]
        if episodes_kwargs is None:
            continue
        for split in sorted({str(ev.get("split", "test")) for ev in spec.evals}):
            fitting = episodes_kwargs(spec, ctx, split, 1).get("episodes")
            if fitting is not None:
                used[fitting.origin] = used.get(fitting.origin, 0) + 1
    for origin, n in used.items():
        m = read_manifest(origin)
        print(f"episodes: {n} trial evaluation(s) on {origin} ({m.describe()}, sha256 {m.hash[:16]}…); "
              "no surrogate banks (they hold the seed's episodes)", file=sys.stderr)
    return hashes
