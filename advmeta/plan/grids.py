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

Planning a grid sweep is here too: ``advmeta sweep``'s options, as typed, make a
:class:`GridRequest`; :func:`plan_grid` parses it (the grid read, ``--eps`` parsed and checked),
gives every table its ε (:mod:`advmeta.plan.epsplan`, calibrated first where a table needs it:
:mod:`advmeta.calibration`) and expands the grid into the :class:`~advmeta.plan.sweeps.Plan`
that :func:`advmeta.tune.runner.run` runs::

    from advmeta.plan import GridRequest, plan_grid
    plan = plan_grid(GridRequest("paper-tables", dataset="omniglot"), dry_run=True)
    [t.trial_id for t in plan.trials]
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from advmeta.eps import TABLE, Epsilon
from advmeta.errors import ConfigError
from advmeta.families import MethodRef, config_class, family_of, get_family, resolve
from advmeta.hparams import HParams, TypedField, typed_fields
from advmeta.plan.budgets import Budget
from advmeta.plan.epsplan import TableEps, as_list, method_eps_overrides, plan, table_rule
from advmeta.plan.settings import eval_settings, train_settings
from advmeta.plan.space import parse_eps_option
from advmeta.plan.sweeps import Plan, check_episodes, estimate_of, resolve_dataset, say_estimate
from advmeta.plan.trial import EvalSettings, TrainSettings, TrialSpec
from advmeta.plan.validate import check_axes

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
            evals = tuple(EvalSettings.of(_table_eps(e, t_eps)) for e in eval_settings(table, budget))
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        axes, seeds = _train_axes(table, budget, tname, where)
        for method in table_methods:
            if methods is not None and method not in methods:
                continue
            m = resolve(method)  # once per method of the table
            train_at = None
            if t_eps is not None and t_eps.trains_methods:
                on_surrogate = sur_eps is not None and m.family.trains_on_surrogate(method)
                train_at = sur_eps.primary if sur_eps is not None and on_surrogate else t_eps.train_eps
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


def _table_eps(ev: dict[str, Any], table_eps: TableEps | None) -> dict[str, Any]:
    """An eval at ``eps = "table"`` at the table's ε (its Epsilons, and where they came from).

    Raises:
        ConfigError: the table's ε is not known.
    """
    if ev.get("eps") != TABLE:
        return ev
    if table_eps is None or not table_eps.eps:
        raise ConfigError('eps = "table" but the table\'s ε is unknown')
    return {**ev, "eps": list(table_eps.eps), "eps_source": table_eps.source}


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
                   train_at: Epsilon | str | None) -> Iterator[tuple[HParams, TrainSettings]]:
    """One method's trials of a table, as (hyper-parameters, training settings): every combination
    of its hyper-parameter axes × training axes × seeds, over the budget's values and the table's ε."""
    fields = _fields(m.name)
    hp_axes = {k: as_list(v) for k, v in dict(table.get("hparams", {})).items() if k in fields}
    fixed = dict(dict(table.get("method_hparams", {})).get(m.name, {}))
    bad = [k for k in fixed if k not in fields]
    if bad:
        raise ConfigError(f"{where}: {m.name} has no hyper-parameter {bad[0]!r}; its fields: {', '.join(fields)}")
    from_budget = {k: v for k, v in m.family.budget_hparams(budget).items() if k in fields}
    from_eps = method_eps_overrides(fields, train_at) if train_at else {}
    for combo in itertools.product(*hp_axes.values()) if hp_axes else [()]:
        hp = from_budget | from_eps | dict(zip(hp_axes, combo)) | fixed
        for train_combo, rep in itertools.product(itertools.product(*axes.values()) if axes else [()], range(seeds)):
            ax = dict(zip(axes, train_combo))
            if ax.get("dataset") in (None, "auto"):
                ax["dataset"] = dataset
            train = train_settings(budget, m, ax, seed + rep, dict(table.get("train", {})))
            try:
                trial_hp = HParams.on_dataset(m.config_class, train.get("dataset"), hp, m.name)
                settings = TrainSettings.of(train)
            except ConfigError as err:
                raise ConfigError(f"{where}: {err}") from None
            yield trial_hp, settings


@dataclass(frozen=True)
class GridRequest:
    """A grid sweep as asked for (``advmeta sweep``'s options, as typed).

    Attributes:
        grid: a shipped grid's name or a ``.toml`` path.
        budget: ``smoke`` | ``quick`` | ``paper``.
        dataset: the few-shot dataset; None or ``auto``: the first real one found.
        seed: the trials' seed.
        methods: only these methods (None: all).
        eps: ``--eps`` as typed (a list ``a,b`` or a range ``lo:hi:step``, each ``k/255`` or a
            float; the first is the training ε), or None for the tables' own.
        episodes: ``--episodes``: standard test-episode manifests (files or built-in names).
        data_root, device, cpus_per_trial: as the run will use them.

    A record of text: :func:`plan_grid` parses and checks it, first (a malformed value is an
    error before the sweep's folder is touched).
    """

    grid: str = "paper-tables"
    budget: str = "quick"
    dataset: str | None = None
    seed: int = 0
    methods: tuple[str, ...] | None = None
    eps: str | None = None
    episodes: tuple[str, ...] = ()
    data_root: str | None = None
    device: str = "auto"
    cpus_per_trial: float | None = None


def _parse_request(req: GridRequest) -> tuple[str, dict[str, Any], list[Epsilon] | None]:
    """The grid's name and data, and ``--eps`` as :class:`~advmeta.eps.Epsilon` s (None: not given).

    Raises:
        ConfigError: an unknown grid, budget or method, a malformed ``eps``.
    """
    from advmeta.plan.budgets import get_budget

    get_budget(req.budget)
    user_eps = parse_eps_option(req.eps, "--eps") if req.eps is not None else None
    name, data = load_grid(req.grid)
    for m in req.methods or ():
        if not m:
            raise ConfigError(f"--methods {','.join(req.methods or ())!r}: empty method name; give a "
                              "comma-separated list, e.g. maml,adml")
        family_of(m)  # an unknown method is an error, not an empty sweep
    return name, data, user_eps


def plan_grid(req: GridRequest, folder: str = "", *, dry_run: bool = False, progress: bool = True,
              hold: Callable[[], Any] | None = None) -> Plan:
    """The trials of a grid at a budget, every table's ε resolved (calibrated first where needed;
    the calibration is cached in the sweep ``folder``).

    ``hold``: called once the request is parsed and checked, before anything reads or writes the
    folder (:func:`advmeta.tune.runner.run` takes the folder's lock there).

    Raises:
        ConfigError: an unknown grid, budget, method or dataset; a malformed ``eps``; an episode
            shape a dataset cannot give.
    """
    from advmeta.plan.budgets import get_budget

    name, data, user_eps = _parse_request(req)
    if hold is not None:
        hold()
    # A grid of simulators (GAIL) reads no dataset: none is chosen or announced.
    ds = (resolve_dataset(req.dataset, req.data_root) if uses_data(data) or req.dataset not in (None, "auto")
          else "none")
    specs, info = _grid_trials(req, folder, name, data, ds, user_eps, dry_run=dry_run, progress=progress)
    sources = check_episodes(specs, list(req.episodes))
    calibrated = bool(info.pop("calibrated_now", False))
    manifest = {"grid": req.grid, "budget": req.budget, "dataset": ds, "seed": req.seed, **info}
    if sources:
        manifest["episodes"] = sources
    return Plan(name, specs, manifest, calibrated, get_budget(req.budget).claim_looks)


@dataclass
class _Calibrated:
    """What planning a grid learnt of the ε calibration: the record (None: not calibrated yet), the
    job, ε* and the surrogate rule's ε, and the manifest's facts."""

    record: dict[str, Any] | None = None
    job: Any = None
    eps: str | None = None
    surrogate_eps: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    now: bool = False


def _grid_trials(req: GridRequest, folder: str, name: str, data: dict[str, Any], dataset: str,
                 user_eps: Sequence[Epsilon | str] | None, *, dry_run: bool = False,
                 progress: bool = True) -> tuple[list[TrialSpec], dict[str, Any]]:
    """The trials of a grid with every table's ε resolved (calibrating first where needed).

    Where a table's ε must be calibrated (:mod:`advmeta.plan.epsplan`) and ``folder`` holds
    no calibration for this grid's MAML yet, the calibration runs now (not on ``dry_run``: the
    listing then shows the pending ε as ``eps*``).

    Returns:
        The trials and the facts for the manifest: ``table_eps`` (ε and source per table),
        ``calibration`` (the curve and choice, when calibrated), ``estimate_seconds``.
    """
    from advmeta.calibration import sweep as calib
    from advmeta.families import RunContext
    from advmeta.plan.budgets import get_budget
    from advmeta.plan.epsplan import as_list, plan

    b = get_budget(req.budget, dataset)
    methods = list(req.methods) if req.methods else None
    ctx = RunContext(sweep_dir=folder, data_root=req.data_root, device=req.device)
    cal = _calibration(req, b, folder, name, data, dataset, user_eps, ctx, dry_run=dry_run, progress=progress)
    info = dict(cal.info)
    table_eps = plan(data, dataset, req.budget, user_eps, cal.eps, cal.surrogate_eps)
    grid_shots = sorted({int(k) for t in data["tables"] for k in as_list(t.get("k_shot", 1))})
    dropped = [k for k in grid_shots if not b.keeps_shot(k)]
    if dropped:
        info["dropped_shots"] = dropped
        if progress or dry_run:
            print(f"budget {req.budget}: {', '.join(map(str, dropped))}-shot trials left out "
                  f"(--budget paper runs every shot)", file=sys.stderr)
    specs = expand(name, data, b, dataset=dataset, seed=req.seed, methods=methods, table_eps=table_eps)
    if cal.record is not None and cal.job is not None and not dry_run:
        calib.hand_over(folder, cal.record, cal.job, specs, ctx)
    info["table_eps"] = {k: v.to_dict() for k, v in table_eps.items()}
    # the calibration counts where this run does it (or a dry run's would); a cached one costs nothing
    cal_spec = calib.calibration_spec(specs) if cal.job is not None and (cal.record is None or cal.now) else None
    found = estimate_of(specs, req.cpus_per_trial, cal_spec, b.calibration_episodes, folder)
    info["estimate_seconds"] = found.seconds
    if dry_run or (progress and not cal.now):  # (a calibrating run said it before calibrating)
        say_estimate(found, len(specs), folder, b.claim_looks)
    if progress or dry_run:
        _say_table_eps(table_eps, dataset, calibrated=cal.eps is not None)
    if cal.now:
        info["calibrated_now"] = True  # for finish()'s wall-time line; popped before the manifest
    return specs, info


def _calibration(req: GridRequest, b: Budget, folder: str, name: str, data: dict[str, Any], dataset: str,
                 user_eps: Sequence[Epsilon | str] | None, ctx: Any, *, dry_run: bool, progress: bool) -> _Calibrated:
    """The grid's ε calibration: cached in the folder, run now (not on a dry run), or not needed.

    Raises:
        ConfigError: a table needs a calibrated ε but the grid has no MAML trial on ``dataset``.
    """
    from advmeta.calibration import sweep as calib
    from advmeta.calibration.search import SURROGATE_DROP, Calibration
    from advmeta.plan.epsplan import needs_calibration, surrogate_tables
    from advmeta.plan.validate import check_episode_shapes

    tables = needs_calibration(data, dataset, user_eps)
    if not tables:
        return _Calibrated()
    provisional = expand(name, data, b, dataset=dataset, seed=req.seed)
    check_episode_shapes(provisional, req.data_root)  # before calibrating on them
    cal_spec = calib.calibration_spec(provisional)
    if cal_spec is None:
        raise ConfigError(f"tables {', '.join(tables)} need an ε calibrated on the grid's MAML, but the grid has "
                          f"no MAML trial on {dataset}; pass --eps k/255")
    threads = max(1, int(req.cpus_per_trial or 1))
    drop = SURROGATE_DROP if surrogate_tables(data, dataset, user_eps) else None
    out = _Calibrated(job=calib.job_for(cal_spec, ctx, b.calibration_episodes, threads, b.q_query, surrogate_drop=drop))
    out.record = calib.cached(folder, out.job)
    if out.record is None and not dry_run:
        keep = [s for s in provisional if not req.methods or s.method in req.methods]
        if progress:  # the cost first, then the calibration's own lines
            say_estimate(estimate_of(keep, req.cpus_per_trial, cal_spec, b.calibration_episodes, folder), len(keep),
                         folder, b.claim_looks)
        _, out.record = calib.run(folder, out.job, calib.surrogate_configs(keep, ctx), progress=progress)
        out.now = True
    if out.record is not None:
        cal = Calibration.from_dict(out.record["calibration"])
        out.eps = cal.eps
        out.info["calibration"] = {**cal.to_dict(), "maml_trial_val_acc": out.record.get("val_acc"),
                                   "seconds": out.record.get("seconds"), "wall_seconds": out.record.get("wall_seconds")}
        if "surrogate" in out.record:
            out.surrogate_eps = str(out.record["surrogate"]["eps"])
            out.info["calibration"]["surrogate"] = dict(out.record["surrogate"])
    return out


def _say_table_eps(table_eps: Mapping[str, Any], dataset: str, calibrated: bool) -> None:
    """Each table's ε and where it comes from (stderr)."""
    from advmeta.calibration.search import SURROGATE_DROP
    from advmeta.eps import PENDING

    for tname, te in table_eps.items():
        if te.source == "grid":
            continue
        why = {"paper": f"the papers' ε on {dataset}", "user": "--eps",
               "calibrated": (f"calibrated on {dataset}" if calibrated else
                              "calibrated when the sweep starts (listed as eps*)")}[te.source]
        if te.source == "calibrated" and te.rule == "surrogate":
            why += (f": the first of ε*·(1 … 2) at which MAML loses ≥ {SURROGATE_DROP:g} points to the "
                    "surrogate's FGSM; ADML and MAML-AD train at it")
        print(f"ε of table {tname}: {', '.join(map(str, te.eps))} ({why})", file=sys.stderr)
    if any(te.eps == (PENDING,) for te in table_eps.values()):
        print(f"trial ids: those of trials at {PENDING} are provisional (ε is part of a trial's identity); the run "
              "lists its own once ε is calibrated, and a dry run of a folder holding that calibration lists the "
              "run's ids", file=sys.stderr)
