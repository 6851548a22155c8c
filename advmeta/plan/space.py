"""Search spaces of ``advmeta tune``: ranges and lists over any field of a learner's ``Config``.

``--gamma 0:5 --k 0.1,1,10`` become the trials of a grid (every combination), or ``--samples``
draws of a random search (seeded, so re-running the command draws the same trials and resumes).
Ranges without a step are sampled continuously by the random search (log-uniformly where the
field is declared ``log=True`` in the learner), and stepped by 1 in a grid.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from advmeta.errors import ConfigError
from advmeta.hparams import HParams
from advmeta.ranges import Kind, TypedField, ValueRange, Values, as_list, parse_values, typed_fields
from advmeta.plan.budgets import Budget
from advmeta.families import MethodRef, resolve
from advmeta.plan.trial import EvalSettings, TrainSettings, TrialSpec

def training_eps_field(fields: Mapping[str, TypedField]) -> str | None:
    """The method's training budget: its one field typed ``Eps`` (not ``EpsStep``), whatever its
    name (``train_eps``, L2L's ``eps``); ``--eps`` names it. None for a method without one."""
    budgets = [n for n, f in fields.items() if f.type.budget]
    return budgets[0] if len(budgets) == 1 else None


def tunable_fields(method: str | MethodRef) -> dict[str, TypedField]:
    """The scalar fields of ``method``'s Config, typed (tuples and dicts are not tunable from the CLI)."""
    return {n: f for n, f in typed_fields(resolve(method).config_class).items() if f.type.scalar}


def describe_fields(method: str | MethodRef, dataset: str | None = None, budget: Budget | None = None) -> list[str]:
    """One line per tunable field: ``--name (type, default X, range lo:hi): doc``.

    X is the value a trial runs with: with ``dataset``, the learner's per-dataset default where it
    has one (``DATASET_DEFAULTS``, shown as ``0.4 on omniglot; 0.01 elsewhere``); with ``budget``
    (as it runs on ``dataset``), a value the budget sets (shown as ``0.1 at budget quick on
    miniimagenet; …``).
    """
    from advmeta.hparams import dataset_defaults

    m = resolve(method)
    fields = tunable_fields(m)
    where = f" on {dataset}" if dataset else ""
    runs = {k: (v, f"on {dataset}") for k, v in dataset_defaults(m.config_class, dataset).items()}
    if budget is not None:
        runs |= {k: (v, f"at budget {budget.name}{where}")
                 for k, v in m.family.budget_hparams(budget).items() if k in fields}
    lines = []
    for name, f in fields.items():
        meta = dict(f.metadata)
        rng = f", range {meta['low']:g}:{meta['high']:g}" if meta.get("low") is not None else ""
        doc = meta.get("doc") or ""
        value, why = runs.get(name, (f.default, ""))
        default = f"{value!r} {why}; {f.default!r} elsewhere" if why and value != f.default else repr(f.default)
        lines.append(f"--{name.replace('_', '-')} ({f.type.kind.value}, default {default}{rng}) {doc}")
    return lines


def parse_overrides(method: str | MethodRef, args: Sequence[str]) -> dict[str, Values]:
    """Parse ``--field VALUES`` / ``--field=VALUES`` pairs for ``method``.

    Raises:
        ConfigError: an unknown field (the message lists the known ones), a missing value or a
            malformed range/list.
    """
    m = resolve(method)
    fields = tunable_fields(m)
    out: dict[str, Values] = {}
    i = 0
    args = list(args)
    while i < len(args):
        token = args[i]
        if not token.startswith("--"):
            raise ConfigError(f"unexpected argument {token!r}; hyper-parameters are given as --name VALUES")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or (args[i + 1].startswith("--") and not _is_number(args[i + 1])):
                raise ConfigError(f"--{key} needs a value (a list a,b,c or a range lo:hi[:step])")
            value = args[i + 1]
            i += 1
        i += 1
        name = key.replace("-", "_")
        if name == "eps" and name not in fields:  # --eps: the training ε, whatever the field's name
            name = training_eps_field(fields) or name
        if name not in fields:
            known = ", ".join("--" + n.replace("_", "-") for n in fields)
            raise ConfigError(f"{m.name} has no hyper-parameter --{key}; known: {known}")
        if name in out:
            raise ConfigError(f"--{key} given twice")
        out[name] = parse_values(value, fields[name].type.kind, option=f"--{key}")
        from advmeta.plan.validate import check_value

        values = out[name]
        ends: list[Any] = list(values) if not isinstance(values, ValueRange) else [values.lo, values.hi]
        if isinstance(values, ValueRange) and values.kind is Kind.EPS:  # its ends, typed as the field's values are
            ends = [_eps(v) for v in ends]
        elif isinstance(values, ValueRange) and values.kind is Kind.INT:
            ends = [int(v) if float(v).is_integer() else v for v in ends]
        for v in ends:  # an impossible value (ε above the largest, a negative rate) names its option now
            check_value(fields[name], v, f"--{key}")
    return out


def _is_number(text: str) -> bool:
    try:
        float(text.split(":")[0].split(",")[0].split("/")[0])
        return True
    except ValueError:
        return False


def _sample(values: Values, field: TypedField, rng: np.random.Generator) -> Any:
    if isinstance(values, ValueRange) and values.step is None and values.kind in (Kind.FLOAT, Kind.EPS):
        meta: Mapping[str, Any] = field.metadata
        log = bool(meta.get("log")) and values.lo > 0
        u = rng.uniform(math.log(values.lo), math.log(values.hi)) if log else rng.uniform(values.lo, values.hi)
        x = math.exp(u) if log else u
        return float(x) if values.kind is Kind.FLOAT else _eps(x)
    if isinstance(values, ValueRange) and values.step is None and values.kind is Kind.INT:
        return int(rng.integers(int(values.lo), int(values.hi) + 1))
    choices = as_list(values)
    return choices[int(rng.integers(len(choices)))]


def _eps(x: float) -> str:
    from advmeta.eps import format_eps

    return format_eps(round(x * 255, 4) / 255)


def tune_trials(method: str | MethodRef, overrides: Mapping[str, Values], budget: Budget, *, dataset: str, seed: int,
                n_way: int = 5, k_shot: int = 1, search: str = "grid", samples: int = 1,
                test_eps: Sequence[str] | None = None, attacks: Sequence[str] = ("pgd",),
                sweep: str | None = None) -> list[TrialSpec]:
    """The trials of ``advmeta tune``.

    Args:
        method: the learner (or L2L trainer).
        overrides: parsed ``--field`` values.
        budget: the budget level.
        dataset: the few-shot dataset.
        seed: the base seed; a grid repeated ``samples`` times uses seeds ``seed … seed+samples-1``.
        n_way: N of N-way.
        k_shot: K of K-shot.
        search: ``grid`` (every combination × ``samples`` seeds) or ``random`` (``samples`` draws).
        samples: repeats (grid) or draws (random).
        test_eps: ε of the evaluation (default: every training ε tried, else the family's: 2/255, L2L 8/255).
        attacks: white-box attacks of the evaluation.
        sweep: the sweep's name (default ``tune-<method>``).

    Raises:
        ConfigError: unknown search, ``samples`` < 1.
    """
    from advmeta.plan.grids import train_settings

    if samples < 1:
        raise ConfigError("--samples must be >= 1")
    m = resolve(method)
    fields = tunable_fields(m)
    sweep = sweep or f"tune-{m.name}"
    if test_eps is None:  # at the ε the search trains at, else the family's default
        test_eps = sorted({v for k, vals in overrides.items() if fields[k].type.budget
                           for v in as_list(vals)}) or None
    evals = m.family.search_evals(budget, list(attacks), list(test_eps) if test_eps is not None else None,
                                             sweep)
    from advmeta.plan.validate import check_eval

    for ev in evals:
        check_eval(ev, sweep)  # unknown attacks or a bad ε: an error before any trial
    base = {k: v for k, v in m.family.budget_hparams(budget).items() if k in fields}
    combos: list[tuple[dict[str, Any], int]] = []
    if search == "grid":
        keys = list(overrides)
        for values in itertools.product(*(as_list(overrides[k]) for k in keys)):
            for rep in range(samples):
                combos.append((dict(zip(keys, values)), seed + rep))
    elif search == "random":
        rng = np.random.default_rng(seed)
        for _ in range(samples):
            combos.append(({k: _sample(v, fields[k], rng) for k, v in overrides.items()}, seed))
    else:
        raise ConfigError(f"unknown search {search!r}; known: grid, random")
    from advmeta.plan.validate import check_value

    for hp, _ in combos:  # a negative learning rate or count is an error here, not a failed trial
        for k, v in hp.items():
            check_value(fields[k], v, f"--{k.replace('_', '-')}")
    specs = []
    for hp, s in combos:
        train = train_settings(budget, m.family_name, m.name, {"dataset": dataset, "n_way": n_way, "k_shot": k_shot},
                               s, {})
        trial_hp = HParams.on_dataset(m.config_class, train.get("dataset"), base | hp, m.name)
        specs.append(TrialSpec(sweep, m.family_name, m.name, trial_hp, TrainSettings.of(train),
                               tuple(EvalSettings.of(e) for e in evals), budget.name, ("tune",)))
    return list(dict((sp.trial_id, sp) for sp in specs).values())
