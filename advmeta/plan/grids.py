"""Grids: TOML files that say which trials a sweep runs, expanded into :class:`TrialSpec` s.

A grid file (``advmeta/plan/grids/<name>.toml``, or any path given to ``--grid``) has a ``description``,
optional ``[defaults]`` and a list of ``[[tables]]``. In a table, every list is an axis that is
crossed with the others:

.. code-block:: toml

    [[tables]]
    name = "tafl"                       # what the table reproduces (the report's heading)
    methods = ["maml", "adml", "aq", "tafl"]
    k_shot = [1]                        # also: n_way, q_query, dataset
    [tables.hparams]                    # learner fields; a field applies to the methods having it
    train_eps = ["2/255"]
    [tables.method_hparams.adml]        # per-method fixed values
    first_order = false
    [[tables.evals]]                    # evaluation protocols of every trial of the table
    scenario = "whitebox"
    attacks = ["pgd", "mifgsm", "cw-linf"]
    eps = ["2/255"]

Trials with the same training settings from different tables are trained once and evaluated
with the union of their protocols. Budget values (iterations, episodes, …) fill what a table
does not set itself.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from advmeta.errors import ConfigError
from advmeta.hparams import HParams
from advmeta.plan.budgets import Budget
from advmeta.plan.epsplan import TABLE, TableEps, as_list, method_eps_overrides, plan, table_rule
from advmeta.families import MethodRef, config_class, family_of, get_family, resolve, scenario_owners
from advmeta.plan.trial import EvalSettings, TrainSettings, TrialSpec
from advmeta.plan.validate import check_axes, check_eval, check_value
from advmeta.ranges import TypedField, typed_fields

_TRAIN_AXES = ("dataset", "n_way", "k_shot", "q_query")
_TABLE_KEYS = {"name", "title", "methods", "hparams", "method_hparams", "evals", "eval", "family", "train",
               "eps_paper", "calibrated_ratios", "calibrate", "seeds", *_TRAIN_AXES}


def grid_names() -> list[str]:
    """Names of the grids shipped in ``advmeta/plan/grids``."""
    folder = resources.files("advmeta.plan") / "grids"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml") and not p.name.startswith("_"))


def load_grid(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """Read a grid by name (shipped) or path (``*.toml``).

    Returns:
        (name, data): the grid's name (file stem) and its parsed TOML.

    Raises:
        ConfigError: unknown grid name, missing file or invalid TOML.
    """
    path = Path(name_or_path).expanduser()
    if name_or_path.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"grid file {name_or_path} does not exist")
        try:
            text, name = path.read_text(encoding="utf-8"), path.stem
        except UnicodeDecodeError as err:
            raise ConfigError(f"grid file {name_or_path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
        except OSError as err:
            raise ConfigError(f"grid file {name_or_path}: cannot read it ({err.strerror or err})") from None
    else:
        if name_or_path not in grid_names():
            raise ConfigError(f"unknown grid {name_or_path!r}; known: {', '.join(grid_names())} (or a path to a .toml file)")
        text = (resources.files("advmeta.plan") / "grids" / f"{name_or_path}.toml").read_text()
        name = name_or_path
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"grid {name_or_path}: invalid TOML: {err}") from None
    if not isinstance(data.get("tables"), list) or not data["tables"]:
        raise ConfigError(f"grid {name_or_path}: needs at least one [[tables]] entry")
    return name, data


def uses_data(data: Mapping[str, Any]) -> bool:
    """Whether a grid has a trial that reads a dataset (:meth:`Family.uses_dataset`; not GAIL's,
    whose environments are simulators)."""
    for table in data.get("tables", []):
        for method in as_list(table.get("methods", [])):
            if method == "*" or get_family(family_of(str(method))).uses_dataset(str(method)):
                return True
    return False


def _fields(method: str) -> dict[str, TypedField]:
    return typed_fields(config_class(method))


def train_settings(budget: Budget, family: str, method: str, axes: Mapping[str, Any], seed: int,
                   extra: Mapping[str, Any]) -> dict[str, Any]:
    """Training settings of a trial: the seed, the family's settings from the budget under the
    table's axes (:meth:`Family.train_settings`), then the table's own ``train`` values."""
    train: dict[str, Any] = {"seed": seed, "budget": budget.name}
    train.update(get_family(family).train_settings(budget, method, axes))
    train.update(extra)
    return train


def classification_dataset(fewshot: str | None) -> str:
    """The plain classification set an L2L trainer uses alongside a few-shot dataset.

    CIFAR-10 (the L2L paper's) when its files are found; else the classification view its
    dataset record names (Omniglot → ``omniglot-cls``, mini-ImageNet → ``miniimagenet-64``).
    """
    from advmeta.data.catalog import classification_names, find, records

    if fewshot is not None and fewshot in classification_names():
        return fewshot
    if find("cifar10") is not None:
        return "cifar10"
    views = {r.name: r.classification for r in records() if r.classification is not None}
    return views.get(str(fewshot), "cifar10")


def queries_of(attack: str) -> int:
    """The query budget an attack declares (``n_queries`` of its test settings: Square's forwards
    per episode, the cost that dominates it); 0 for attacks whose cost is their steps."""
    from advmeta.attacks import attack_info, attack_names

    return int(dict(attack_info(attack).test_params).get("n_queries", 0)) if attack in attack_names() else 0


def eval_settings(table: Mapping[str, Any], budget: Budget, table_eps: TableEps | None = None) -> list[dict[str, Any]]:
    """A table's ``evals`` with the budget's numbers filled in (episodes, attack steps, masking
    checks), validated; what a grid and ``advmeta tune`` evaluate with."""
    evals = as_list(table.get("evals", table.get("eval", [])))
    out = []
    for ev in evals:
        if not isinstance(ev, Mapping):
            raise ConfigError(f"table {table.get('name')!r}: each eval must be a table of settings")
        check_eval(ev, str(table.get("name", "table")))
        full: dict[str, Any] = {"episodes": budget.test_episodes, "attack_steps": budget.attack_steps, "split": "test",
                "n_test": budget.l2l_test_images}
        if ev.get("scenario") in ("whitebox", "support", "support+query") and budget.whitebox_episodes:
            full["episodes"] = budget.whitebox_episodes
        attacks = as_list(ev.get("attacks", []))
        heavy = ev.get("scenario") in ("support", "support+query") or any(queries_of(a) for a in attacks)
        if heavy and budget.adaptive_episodes:
            full["episodes"] = budget.adaptive_episodes
        scenario = str(ev.get("scenario", "whitebox"))
        owner = scenario_owners()[scenario]
        full.update(owner.eval_defaults(budget, scenario))
        full.update(ev)
        own = {str(a): dict(p) for a, p in dict(ev.get("attack_params", {})).items()}
        by_budget = {a: {k: list(v) if isinstance(v, tuple) else v for k, v in p}
                     for a, p in budget.attack_params if a in attacks}
        if own or by_budget:  # the budget's settings of an attack, the grid's own winning
            full["attack_params"] = {a: {**by_budget.get(a, {}), **own.get(a, {})} for a in sorted({*own, *by_budget})}
        if full.get("scenario", "whitebox") == "whitebox":
            # The masking checks of every white-box evaluation, sized by the budget (a grid's
            # `checks = false` turns them off, a table of CheckSettings fields overrides).
            own = ev.get("checks", {})
            full["checks"] = False if own is False else {**dict(budget.checks), **dict(own)}
        if full.get("eps") == TABLE:
            if table_eps is None or not table_eps.eps:
                raise ConfigError(f"table {table.get('name')!r}: eps = \"table\" but the table's ε is unknown")
            full["eps"] = list(table_eps.eps)
            full["eps_source"] = table_eps.source
        elif "eps" in full:
            full["eps_source"] = "grid"
        for key in ("attacks", "eps", "support", "query"):
            if key in full:
                full[key] = as_list(full[key])
        if "attacks" in full:
            full["attacks"] = owner.budget_attacks(budget, scenario, full["attacks"])
        out.append(full)
    return out


def expand(name: str, data: Mapping[str, Any], budget: Budget, *, dataset: str | None, seed: int,
           methods: Sequence[str] | None = None, sweep: str | None = None,
           table_eps: Mapping[str, TableEps] | None = None) -> list[TrialSpec]:
    """The trials of a grid.

    Args:
        name: the grid's name.
        data: the parsed grid (see the module docstring).
        budget: the budget level.
        dataset: the few-shot dataset replacing ``"auto"`` (and used where a table names none).
        seed: the sweep's seed (every trial's training seed and test-episode seed).
        methods: keep only these methods (``None``: all).
        sweep: the sweep's name (default: the grid's).
        table_eps: the ε of each table (:func:`advmeta.plan.epsplan.plan`; default: planned
            here, a calibrated ε still pending). Where it is calibrated or the user's, the
            table's adversarial methods train at it too.

    Raises:
        ConfigError: unknown method, unknown hyper-parameter, or a malformed table.
    """
    defaults = dict(data.get("defaults", {}))
    if table_eps is None:
        table_eps = plan(data, str(dataset), budget.name)
    # The methods that train on the surrogate's images train at its table's ε in every table.
    sur_eps = next((te for te in table_eps.values() if te.rule == "surrogate" and te.trains_methods), None)
    merged: dict[str, TrialSpec] = {}
    order: list[str] = []
    for table in data["tables"]:
        tname = str(table.get("name", "table"))
        where = f"grid {name}, table {tname!r}"
        unknown = set(table) - _TABLE_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
        table = {**defaults, **table}
        table_methods = _table_methods(table, where)
        table_rule(table)  # (plan() checked it too, unless table_eps came from elsewhere)
        t_eps = table_eps.get(tname)
        try:
            evals = tuple(EvalSettings.of(e) for e in eval_settings(table, budget, t_eps))
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        axes, seeds = _train_axes(table, budget, tname, where)
        for method in table_methods:
            if methods is not None and method not in methods:
                continue
            train_at = None
            if t_eps is not None and t_eps.trains_methods:
                on_surrogate = sur_eps is not None and resolve(method).family.trains_on_surrogate(method)
                train_at = sur_eps.primary if sur_eps is not None and on_surrogate else t_eps.train_eps
            m = resolve(method)
            for trial_hp, settings in _method_trials(m, table, where, budget, axes, seeds, dataset, seed, train_at):
                spec = TrialSpec(sweep or name, m.family_name, m.name, trial_hp, settings, evals, budget.name, (tname,))
                key = spec.with_evals(()).trial_id  # the same training from two tables: trained once
                if key in merged:
                    prev = merged[key]
                    union = list(prev.evals) + [e for e in evals if e not in prev.evals]
                    merged[key] = dataclasses.replace(prev, evals=tuple(union),
                                                      table=tuple(dict.fromkeys(prev.table + (tname,))))
                else:
                    merged[key] = spec
                    order.append(key)
    if not order:
        raise ConfigError(f"grid {name}: no trials (methods filter {list(methods or [])} matched nothing?)")
    return [merged[k] for k in order]


def _table_methods(table: Mapping[str, Any], where: str) -> list[str]:
    """A table's methods (``*``: every learner of the core), its per-method and axis hyper-parameters checked."""
    table_methods = as_list(table.get("methods", []))
    if "*" in table_methods:  # every learner of the core, present and future
        from advmeta.learners import learner_names

        table_methods = [m for m in table_methods if m != "*"] + [m for m in learner_names() if m not in table_methods]
    for m in dict(table.get("method_hparams", {})):
        if m not in table_methods:
            raise ConfigError(f"{where}: method_hparams for {m!r}, which is not in methods")
    for field_name in dict(table.get("hparams", {})):
        if not any(field_name in _fields(m) for m in table_methods):
            raise ConfigError(f"{where}: no method has a hyper-parameter {field_name!r}")
    return [str(m) for m in table_methods]


def _train_axes(table: Mapping[str, Any], budget: Budget, tname: str, where: str) -> tuple[dict[str, list[Any]], int]:
    """A table's training axes (``k_shot``, ``n_way``, ``q_query``, ``dataset``; the shots a budget
    leaves out dropped) and its seeds per setting."""
    axes = {k: as_list(table[k]) for k in _TRAIN_AXES if k in table}
    check_axes(axes, tname)
    seeds = table.get("seeds", budget.seeds)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"{where}: seeds must be a whole number >= 1 (trials per setting, seeded --seed, "
                          f"--seed+1, …), got {seeds!r}")
    if "k_shot" in axes:
        kept = [k for k in axes["k_shot"] if budget.keeps_shot(int(k))]
        axes["k_shot"] = kept or axes["k_shot"][:1]
    return axes, seeds


def _method_trials(m: MethodRef, table: Mapping[str, Any], where: str, budget: Budget, axes: Mapping[str, list[Any]],
                   seeds: int, dataset: str | None, seed: int,
                   train_at: str | None) -> Iterator[tuple[HParams, TrainSettings]]:
    """One method's trials of a table, as (hyper-parameters, training settings): every combination
    of its hyper-parameter axes × training axes × seeds, over the budget's values and the table's ε."""
    fields = _fields(m.name)
    hp_axes = {k: as_list(v) for k, v in dict(table.get("hparams", {})).items() if k in fields}
    fixed = dict(dict(table.get("method_hparams", {})).get(m.name, {}))
    bad = [k for k in fixed if k not in fields]
    if bad:
        raise ConfigError(f"{where}: {m.name} has no hyper-parameter {bad[0]!r}; its fields: {', '.join(fields)}")
    for k, values in [*hp_axes.items(), *((k, [v]) for k, v in fixed.items())]:
        for v in values:
            check_value(fields[k], v, f"{where}: {m.name} {k}")
    from_budget = {k: v for k, v in m.family.budget_hparams(budget).items() if k in fields}
    from_eps = method_eps_overrides(fields, train_at) if train_at else {}
    for combo in itertools.product(*hp_axes.values()) if hp_axes else [()]:
        hp = from_budget | from_eps | dict(zip(hp_axes, combo)) | fixed
        for train_combo, rep in itertools.product(itertools.product(*axes.values()) if axes else [()], range(seeds)):
            ax = dict(zip(axes, train_combo))
            if ax.get("dataset") in (None, "auto"):
                ax["dataset"] = dataset
            train = train_settings(budget, m.family_name, m.name, ax, seed + rep, dict(table.get("train", {})))
            try:
                trial_hp = HParams.on_dataset(m.config_class, train.get("dataset"), hp, m.name)
                settings = TrainSettings.of(train)
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}") from None
            yield trial_hp, settings
