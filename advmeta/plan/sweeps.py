"""The two ways to plan a sweep — a grid, or a search over one method's hyper-parameters — each a
request in and a :class:`Plan` out: the trials and the facts the sweep's manifest records.

``advmeta sweep`` and ``advmeta tune`` build a :class:`GridRequest` or a :class:`SearchRequest`
from their options (text as typed) and hand it here; every value is parsed once, on the way in
(a hyper-parameter by its field's declared type, ε by :mod:`advmeta.eps`), and nothing comes back
to the command line but the plan. Then :func:`advmeta.tune.runner.run_sweep` runs it. The same
two calls are the Python API::

    from advmeta.plan import GridRequest, plan_grid
    plan = plan_grid(GridRequest("paper-tables", dataset="omniglot"), dry_run=True)
    [t.trial_id for t in plan.trials]

A grid whose tables need a calibrated ε calibrates it while it is planned (it trains the grid's
MAML once, cached in the sweep folder; a dry run lists those trials at ``eps*`` instead).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from advmeta.errors import ConfigError
from advmeta.ledger import Ledger
from advmeta.plan.budgets import Budget
from advmeta.plan.trial import TrialSpec


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

    Made from the options as typed, it parses and checks them at once (``name`` and ``data``: the
    grid read; ``eps_values``: ``eps`` as canonical ``k/255``): a malformed value is an error
    before any work.
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
    # parsed once, when the request is made (a malformed value is an error before any work)
    name: str = field(init=False, compare=False)
    data: dict[str, Any] = field(init=False, compare=False, repr=False)
    eps_values: tuple[str, ...] | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        from advmeta.families import family_of
        from advmeta.plan.budgets import get_budget
        from advmeta.plan.grids import load_grid

        get_budget(self.budget)
        object.__setattr__(self, "eps_values",
                           tuple(parse_eps_option(self.eps, "--eps")) if self.eps is not None else None)
        name, data = load_grid(self.grid)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "data", data)
        for m in self.methods or ():
            if not m:
                raise ConfigError(f"--methods {','.join(self.methods or ())!r}: empty method name; give a "
                                  "comma-separated list, e.g. maml,adml")
            family_of(m)  # an unknown method is an error, not an empty sweep


@dataclass(frozen=True)
class SearchRequest:
    """A search over one method's hyper-parameters as asked for (``advmeta tune``'s options).

    Made from the options as typed, it parses and checks them at once (``ref``: the method resolved;
    ``overrides``: the hyper-parameter values parsed by their fields' types; ``test_eps_values``).

    Attributes:
        method: the learner or trainer.
        options: the hyper-parameter options as typed, e.g. ``("--gamma", "0:5", "--k=0.1,1,10")``.
        search: ``grid`` (every combination × ``samples`` seeds) or ``random`` (``samples`` draws).
        test_eps: ``--test-eps`` as typed (a list or a range), or None (the training ε tried).
        attacks: the evaluation's white-box attacks, comma-separated.
        Others: as :class:`GridRequest`.
    """

    method: str
    options: tuple[str, ...] = ()
    budget: str = "quick"
    dataset: str | None = None
    seed: int = 0
    n_way: int = 5
    k_shot: int = 1
    search: str = "grid"
    samples: int = 1
    test_eps: str | None = None
    attacks: str = "pgd"
    data_root: str | None = None
    cpus_per_trial: float | None = None
    # parsed once, when the request is made (a malformed value is an error before any work)
    ref: Any = field(init=False, compare=False, repr=False)
    overrides: dict[str, Any] = field(init=False, compare=False)
    test_eps_values: tuple[str, ...] | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        from advmeta.families import resolve
        from advmeta.plan.budgets import get_budget
        from advmeta.plan.space import parse_overrides

        object.__setattr__(self, "ref", resolve(self.method))  # once; an unknown method is an error first
        if self.k_shot < 1 or self.n_way < 2:
            raise ConfigError(f"--k-shot must be >= 1 and --n-way >= 2, got {self.k_shot} and {self.n_way}")
        object.__setattr__(self, "overrides", parse_overrides(self.ref, self.options))
        get_budget(self.budget)
        object.__setattr__(self, "test_eps_values",
                           tuple(parse_eps_option(self.test_eps, "--test-eps")) if self.test_eps else None)


@dataclass
class Plan:
    """What a sweep will run: its ``name``, ``trials`` and the ``manifest`` facts (budget, dataset,
    seed, the tables' ε, the calibration, the estimate). ``calibrated_now``: planning calibrated ε
    (the run's wall time includes it)."""

    name: str
    trials: list[TrialSpec]
    manifest: dict[str, Any] = field(default_factory=dict)
    calibrated_now: bool = False


def parse_eps_option(text: str, option: str) -> list[str]:
    """An ε option as typed — a list ``a,b`` or a range ``lo:hi:step``, each ``k/255`` or a float —
    as canonical ``k/255`` strings, each checked (> 0, at most the largest ε advmeta accepts)."""
    from advmeta.eps import parse_eps
    from advmeta.plan.validate import check_eps_value
    from advmeta.ranges import Kind, as_list, parse_values

    values = [str(v) for v in as_list(parse_values(text, Kind.EPS, option))]
    for e in values:
        check_eps_value(e, option)
        if parse_eps(e) <= 0:
            raise ConfigError(f"{option} {e}: ε must be > 0")
    return values


def plan_grid(req: GridRequest, folder: str = "", *, dry_run: bool = False, progress: bool = True) -> Plan:
    """The trials of a grid at a budget, every table's ε resolved (calibrated first where needed;
    the calibration is cached in the sweep ``folder``).

    Raises:
        ConfigError: an unknown grid, budget, method or dataset; a malformed ``eps``; an episode
            shape a dataset cannot give.
    """
    from advmeta.plan.grids import uses_data

    name, data = req.name, req.data
    user_eps = list(req.eps_values) if req.eps_values is not None else None
    # A grid of simulators (GAIL) reads no dataset: none is chosen or announced.
    ds = (resolve_dataset(req.dataset, req.data_root) if uses_data(data) or req.dataset not in (None, "auto")
          else "none")
    specs, info = _grid_trials(req, folder, name, data, ds, user_eps, dry_run=dry_run, progress=progress)
    sources = check_episodes(specs, list(req.episodes))
    calibrated = bool(info.pop("calibrated_now", False))
    manifest = {"grid": req.grid, "budget": req.budget, "dataset": ds, "seed": req.seed, **info}
    if sources:
        manifest["episodes"] = sources
    return Plan(name, specs, manifest, calibrated)


def plan_search(req: SearchRequest, *, dry_run: bool = False, progress: bool = True) -> Plan:
    """The trials of a search over ``req.method``'s hyper-parameters.

    Raises:
        ConfigError: an unknown method, option, budget or dataset; a malformed value; an impossible
            episode shape.
    """
    from advmeta.plan.budgets import get_budget
    from advmeta.plan.space import tune_trials
    from advmeta.plan.validate import check_episode_shapes

    method, overrides = req.ref, req.overrides
    name = f"tune-{req.method}"
    if not overrides and req.search == "grid" and req.samples == 1 and progress:
        print(f"note: no hyper-parameter given; running the defaults once (see `advmeta tune {req.method} --params`)",
              file=sys.stderr)
    test_eps = list(req.test_eps_values) if req.test_eps_values is not None else None
    simulated = not method.family.uses_dataset(req.method)  # GAIL: no dataset chosen or announced
    ds = "none" if simulated and req.dataset in (None, "auto") else resolve_dataset(req.dataset, req.data_root)
    specs = tune_trials(method, overrides, get_budget(req.budget, ds), dataset=ds, seed=req.seed, n_way=req.n_way,
                        k_shot=req.k_shot, search=req.search, samples=req.samples, test_eps=test_eps,
                        attacks=[a.strip() for a in req.attacks.split(",") if a.strip()], sweep=name)
    check_episode_shapes(specs, req.data_root)  # --n-way 5000: an error now, not a failed trial
    manifest: dict[str, Any] = {"method": req.method, "budget": req.budget, "dataset": ds, "seed": req.seed,
                                "search": req.search, "samples": req.samples}
    manifest["estimate_seconds"] = estimate_of(specs, req.cpus_per_trial).seconds
    if dry_run or progress:
        say_estimate(specs, req.cpus_per_trial)
    return Plan(name, specs, manifest)


def resume_plan(folder: str, keys: Sequence[str]) -> Plan:
    """The plan recorded in ``folder`` (``--resume``): its trials, and the manifest's ``keys``.

    Raises:
        ConfigError: no sweep was started there.
    """
    name, specs, manifest = resumed_specs(folder)
    return Plan(name, specs, {**{k: manifest[k] for k in keys if k in manifest}, "resumed": True})


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
                 user_eps: Sequence[str] | None, *, dry_run: bool = False,
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
    from advmeta.plan.grids import expand

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
    info["estimate_seconds"] = estimate_of(specs, req.cpus_per_trial, cal_spec, b.calibration_episodes).seconds
    if dry_run or (progress and not cal.now):  # (a calibrating run said it before calibrating)
        say_estimate(specs, req.cpus_per_trial, cal_spec, b.calibration_episodes, b.claim_looks)
    if progress or dry_run:
        _say_table_eps(table_eps, dataset, calibrated=cal.eps is not None)
    if cal.now:
        info["calibrated_now"] = True  # for finish()'s wall-time line; popped before the manifest
    return specs, info


def _calibration(req: GridRequest, b: Budget, folder: str, name: str, data: dict[str, Any], dataset: str,
                 user_eps: Sequence[str] | None, ctx: Any, *, dry_run: bool, progress: bool) -> _Calibrated:
    """The grid's ε calibration: cached in the folder, run now (not on a dry run), or not needed.

    Raises:
        ConfigError: a table needs a calibrated ε but the grid has no MAML trial on ``dataset``.
    """
    from advmeta.calibration import sweep as calib
    from advmeta.calibration.search import SURROGATE_DROP, Calibration
    from advmeta.plan.epsplan import needs_calibration, surrogate_tables
    from advmeta.plan.grids import expand
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
            say_estimate(keep, req.cpus_per_trial, cal_spec, b.calibration_episodes, b.claim_looks)
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
    from advmeta.plan.epsplan import PENDING

    for tname, te in table_eps.items():
        if te.source == "grid":
            continue
        why = {"paper": f"the papers' ε on {dataset}", "user": "--eps",
               "calibrated": (f"calibrated on {dataset}" if calibrated else
                              "calibrated when the sweep starts (listed as eps*)")}[te.source]
        if te.source == "calibrated" and te.rule == "surrogate":
            why += (f": the first of ε*·(1 … 2) at which MAML loses ≥ {SURROGATE_DROP:g} points to the "
                    "surrogate's FGSM; ADML and MAML-AD train at it")
        print(f"ε of table {tname}: {', '.join(te.eps)} ({why})", file=sys.stderr)
    if any(te.eps == (PENDING,) for te in table_eps.values()):
        print(f"trial ids: those of trials at {PENDING} are provisional (ε is part of a trial's identity); the run "
              "lists its own once ε is calibrated, and a dry run of a folder holding that calibration lists the "
              "run's ids", file=sys.stderr)


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


def estimate_of(specs: Sequence[TrialSpec], cpus_per_trial: float | None, calibration: TrialSpec | None = None,
                calibration_episodes: int = 20) -> Any:
    """The sweep's estimated wall time on this machine (:mod:`advmeta.plan.estimate`)."""
    from advmeta.plan.estimate import estimate

    slots = max(1, int((os.cpu_count() or 1) // max(1.0, float(cpus_per_trial or 1))))
    return estimate(specs, slots, calibration, calibration_episodes)


def say_estimate(specs: Sequence[TrialSpec], cpus_per_trial: float | None, calibration: TrialSpec | None = None,
                 calibration_episodes: int = 20, looks: int = 1) -> None:
    """Print the estimate (stderr), and a warning when the sweep has many trials. ``looks``: the
    claims' planned looks (their further blocks, after the trials, are not in the estimate)."""
    from advmeta.plan.estimate import TOO_MANY

    text = estimate_of(specs, cpus_per_trial, calibration, calibration_episodes).text(os.cpu_count() or 1)
    if looks > 1:
        text += (f"; not in it: up to {looks - 1} further block(s) of episodes for the claims still undecided "
                 "after the trials")
    print(f"estimate: {text}", file=sys.stderr)
    if len(specs) > TOO_MANY:
        print(f"warning: {len(specs)} trials (more than {TOO_MANY}); narrow the ranges or lists, or use --samples with "
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
