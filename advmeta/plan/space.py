"""Search spaces of ``advmeta tune``: ranges and lists over any field of a learner's ``Config``.

``--gamma 0:5 --k 0.1,1,10`` become the trials of a grid (every combination), or ``--samples``
draws of a random search (seeded, so re-running the command draws the same trials and resumes).
Ranges without a step are sampled continuously by the random search (log-uniformly where the
field is declared ``log=True`` in the learner), and stepped by 1 in a grid.

``advmeta tune``'s options, as typed, make a :class:`SearchRequest`; :func:`plan_search` parses it
(the method resolved once, each value by its field's declared type) and makes the trials, the
:class:`~advmeta.plan.sweeps.Plan` that :func:`advmeta.tune.runner.run` runs.

The syntax of a value on the command line, for any field (its kind read from its declared type,
:func:`advmeta.hparams.typed_fields`):

- a list ``a,b,c`` — exactly those values;
- a range ``lo:hi:step`` — ``lo, lo+step, …`` up to and including ``hi`` (within rounding);
- a range ``lo:hi`` — the same with step 1 for a grid, or the continuous interval [lo, hi]
  when a search algorithm samples it (:attr:`ValueRange.step` is then ``None``).

ε accepts ``k/255`` in every position: ``2/255:8/255:2/255`` is 2/255, 4/255, 6/255, 8/255.
Malformed input raises :class:`~advmeta.errors.ConfigError` with one line naming the option and
the problem.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from advmeta.eps import Epsilon, check_eps_value, format_eps, parse_eps
from advmeta.errors import ConfigError
from advmeta.hparams import HParams
from advmeta.hparams import Kind, TypedField, typed_fields
from advmeta.plan.budgets import Budget
from advmeta.families import MethodRef, resolve
from advmeta.plan.sweeps import Plan, estimate_of, resolve_dataset, say_estimate
from advmeta.plan.trial import EvalSettings, TrainSettings, TrialSpec

_MAX_VALUES = 10_000
"""A range longer than this is almost surely a typo (e.g. a step of 1e-6)."""


@dataclass(frozen=True)
class ValueRange:
    """A numeric interval ``[lo, hi]``, stepped by ``step`` (``None``: continuous, grid step 1)."""

    lo: float
    hi: float
    step: float | None
    kind: Kind

    def grid(self) -> list[Any]:
        """The values ``lo, lo+step, …, ≤ hi`` (step 1 when none was given), typed after ``kind``."""
        step = 1.0 if self.step is None else self.step
        n = int(math.floor((self.hi - self.lo) / step + 1e-9)) + 1
        if n > _MAX_VALUES:
            raise ConfigError(f"range {self.describe()} has {n} values (more than {_MAX_VALUES})")
        values = [self.lo + i * step for i in range(n)]
        return [_typed(round(v, 12), self.kind) for v in values]

    def describe(self) -> str:
        """The range as the user would write it."""
        fmt: Callable[[float], str] = format_eps if self.kind is Kind.EPS else (lambda v: f"{v:g}")
        parts = [fmt(self.lo), fmt(self.hi)] + ([] if self.step is None else [fmt(self.step)])
        return ":".join(parts)


Values = list[Any] | ValueRange


def _typed(value: float, kind: Kind) -> Any:
    if kind is Kind.INT:
        return int(round(value))
    if kind is Kind.EPS:
        return Epsilon(value)
    return float(value)


def parse_scalar(text: str, kind: Kind, option: str = "value") -> Any:
    """One value typed after ``kind``; ε comes back as an :class:`~advmeta.eps.Epsilon`."""
    text = text.strip()
    if not text:
        raise ConfigError(f"{option}: empty value")
    try:
        if kind is Kind.EPS:
            return Epsilon(text)
        if kind is Kind.INT:
            number = float(text)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind is Kind.FLOAT:
            number = float(text)
            if not math.isfinite(number):
                raise ValueError
            return number
        if kind is Kind.BOOL:
            lowered = text.lower()
            if lowered in {"true", "1", "yes", "on"}:
                return True
            if lowered in {"false", "0", "no", "off"}:
                return False
            raise ValueError
    except ConfigError as err:
        raise ConfigError(f"{option}: {err}") from None
    except ValueError:
        raise ConfigError(f"{option}: {text!r} is not a valid {kind.value}") from None
    return text


def _number(text: str, kind: Kind, option: str) -> float:
    try:
        if kind is Kind.EPS:
            return parse_eps(text)
        value = float(text)
    except (ConfigError, ValueError):
        raise ConfigError(f"{option}: {text!r} in range is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{option}: {text!r} in range is not finite")
    return value


def parse_values(text: str, kind: Kind = Kind.FLOAT, option: str = "value") -> Values:
    """Parse ``a,b,c``, ``lo:hi`` or ``lo:hi:step`` (see the module docstring).

    Args:
        text: what the user wrote.
        kind: how each value is read.
        option: the option's name for error messages (``--gamma``).

    Returns:
        A list of typed values, or a :class:`ValueRange`.

    Raises:
        ConfigError: malformed input — a zero or negative step, ``lo > hi``, a non-number in a
            range, a range over a boolean or string field, an empty item.

    Examples:
        >>> parse_values("0.1,1,10")
        [0.1, 1.0, 10.0]
        >>> parse_values("0:5").grid()
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        >>> parse_values("2/255:8/255:2/255", Kind.EPS).grid()
        [Epsilon('2/255'), Epsilon('4/255'), Epsilon('6/255'), Epsilon('8/255')]
    """
    text = text.strip()
    if not text:
        raise ConfigError(f"{option}: empty value")
    if ":" in text and kind not in (Kind.STR,):
        if "," in text:
            raise ConfigError(f"{option}: {text!r} mixes a range (:) and a list (,); use one")
        if kind is Kind.BOOL:
            raise ConfigError(f"{option}: a boolean takes a list (true,false), not a range")
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ConfigError(f"{option}: {text!r} is not lo:hi or lo:hi:step")
        lo, hi = (_number(p, kind, option) for p in parts[:2])
        step = _number(parts[2], kind, option) if len(parts) == 3 else None
        if step is not None and step <= 0:
            raise ConfigError(f"{option}: step of {text!r} must be > 0")
        if lo > hi:
            raise ConfigError(f"{option}: {text!r} has lo > hi")
        rng = ValueRange(lo, hi, step, kind)
        try:
            rng.grid()  # validates the length now, not when a trial is built
        except ConfigError as err:
            raise ConfigError(f"{option}: {err}") from None
        return rng
    items = text.split(",")
    if any(not i.strip() for i in items):
        raise ConfigError(f"{option}: {text!r} has an empty item")
    values = [parse_scalar(i, kind, option) for i in items]
    return list(dict.fromkeys(values))  # drop repeats, keep order


def as_list(values: Values) -> list[Any]:
    """The values of a list or the grid of a range."""
    return values.grid() if isinstance(values, ValueRange) else list(values)


def parse_eps_option(text: str, option: str) -> list[Epsilon]:
    """An ε option as typed — a list ``a,b`` or a range ``lo:hi:step``, each ``k/255`` or a float —
    as :class:`~advmeta.eps.Epsilon` s, each checked (> 0, at most the largest ε advmeta accepts):
    the one parse of ``--eps`` and ``--test-eps``."""
    values: list[Epsilon] = as_list(parse_values(text, Kind.EPS, option))
    for e in values:
        check_eps_value(e, option)
        if e <= 0:
            raise ConfigError(f"{option} {e}: ε must be > 0")
    return values


def _ref(method: str | MethodRef) -> MethodRef:
    """The method resolved: a :class:`~advmeta.families.MethodRef` as given (a request's, resolved once),
    a name looked up."""
    return method if isinstance(method, MethodRef) else resolve(method)


def training_eps_field(fields: Mapping[str, TypedField]) -> str | None:
    """The method's training budget: its one field typed ``Eps`` (not ``EpsStep``), whatever its
    name (``train_eps``, L2L's ``eps``); ``--eps`` names it. None for a method without one."""
    budgets = [n for n, f in fields.items() if f.type.budget]
    return budgets[0] if len(budgets) == 1 else None


def tunable_fields(method: str | MethodRef) -> dict[str, TypedField]:
    """The scalar fields of ``method``'s Config, typed (tuples and dicts are not tunable from the CLI)."""
    return {n: f for n, f in typed_fields(_ref(method).config_class).items() if f.type.scalar}


def describe_fields(method: str | MethodRef, dataset: str | None = None, budget: Budget | None = None) -> list[str]:
    """One line per tunable field: ``--name (type, default X, range lo:hi): doc``.

    X is the value a trial runs with: with ``dataset``, the learner's per-dataset default where it
    has one (``DATASET_DEFAULTS``, shown as ``0.4 on omniglot; 0.01 elsewhere``); with ``budget``
    (as it runs on ``dataset``), a value the budget sets (shown as ``0.1 at budget quick on
    miniimagenet; …``).
    """
    from advmeta.hparams import dataset_defaults

    m = _ref(method)
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
    m = _ref(method)
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
        from advmeta.hparams import check_value

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


def _eps(x: float) -> Epsilon:
    return Epsilon(round(x * 255, 4) / 255)


def tune_trials(method: str | MethodRef, overrides: Mapping[str, Values], budget: Budget, *, dataset: str, seed: int,
                n_way: int = 5, k_shot: int = 1, search: str = "grid", samples: int = 1,
                test_eps: Sequence[Epsilon | str] | None = None, attacks: Sequence[str] = ("pgd",),
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
    from advmeta.plan.settings import train_settings

    if samples < 1:
        raise ConfigError("--samples must be >= 1")
    m = _ref(method)
    fields = tunable_fields(m)
    sweep = sweep or f"tune-{m.name}"
    if test_eps is None:  # at the ε the search trains at (in the order of their text), else the family's default
        test_eps = sorted({Epsilon(v) for k, vals in overrides.items() if fields[k].type.budget
                           for v in as_list(vals)}, key=str) or None
    evals = m.family.search_evals(budget, list(attacks), [Epsilon(e) for e in test_eps] if test_eps is not None else None,
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
    specs = []
    for hp, s in combos:
        train = train_settings(budget, m, {"dataset": dataset, "n_way": n_way, "k_shot": k_shot},
                               s, {})
        trial_hp = HParams.on_dataset(m.config_class, train.get("dataset"), base | hp, m.name)
        specs.append(TrialSpec(sweep, m.family_name, m.name, trial_hp, TrainSettings.of(train),
                               tuple(EvalSettings.of(e) for e in evals), budget.name, ("tune",)))
    return list(dict((sp.trial_id, sp) for sp in specs).values())


@dataclass(frozen=True)
class SearchRequest:
    """A search over one method's hyper-parameters as asked for (``advmeta tune``'s options).

    A record of text: :func:`plan_search` parses and checks it, first (the method resolved once,
    each value by its field's declared type; a malformed value is an error before any work).

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


def _parse_request(req: SearchRequest) -> tuple[MethodRef, dict[str, Values], list[Epsilon] | None]:
    """The method resolved, the hyper-parameter options parsed by their fields' declared types, and
    ``--test-eps`` as :class:`~advmeta.eps.Epsilon` s (None: not given).

    Raises:
        ConfigError: an unknown method, option or budget; a malformed value; an impossible shape.
    """
    from advmeta.plan.budgets import get_budget

    ref = resolve(req.method)  # once; an unknown method is an error first
    if req.k_shot < 1 or req.n_way < 2:
        raise ConfigError(f"--k-shot must be >= 1 and --n-way >= 2, got {req.k_shot} and {req.n_way}")
    overrides = parse_overrides(ref, req.options)
    get_budget(req.budget)
    return ref, overrides, parse_eps_option(req.test_eps, "--test-eps") if req.test_eps else None


def plan_search(req: SearchRequest, folder: str = "", *, dry_run: bool = False, progress: bool = True) -> Plan:
    """The trials of a search over ``req.method``'s hyper-parameters (``folder``: the sweep's, whose
    finished trials the estimate leaves out).

    Raises:
        ConfigError: an unknown method, option, budget or dataset; a malformed value; an impossible
            episode shape.
    """
    from advmeta.plan.budgets import get_budget
    from advmeta.plan.validate import check_episode_shapes

    method, overrides, test_eps = _parse_request(req)
    name = f"tune-{req.method}"
    if not overrides and req.search == "grid" and req.samples == 1 and progress:
        print(f"note: no hyper-parameter given; running the defaults once (see `advmeta tune {req.method} --params`)",
              file=sys.stderr)
    simulated = not method.family.uses_dataset(req.method)  # GAIL: no dataset chosen or announced
    ds = "none" if simulated and req.dataset in (None, "auto") else resolve_dataset(req.dataset, req.data_root)
    specs = tune_trials(method, overrides, get_budget(req.budget, ds), dataset=ds, seed=req.seed, n_way=req.n_way,
                        k_shot=req.k_shot, search=req.search, samples=req.samples, test_eps=test_eps,
                        attacks=[a.strip() for a in req.attacks.split(",") if a.strip()], sweep=name)
    check_episode_shapes(specs, req.data_root)  # --n-way 5000: an error now, not a failed trial
    manifest: dict[str, Any] = {"method": req.method, "budget": req.budget, "dataset": ds, "seed": req.seed,
                                "search": req.search, "samples": req.samples}
    found = estimate_of(specs, req.cpus_per_trial, folder=folder)
    manifest["estimate_seconds"] = found.seconds
    if dry_run or progress:
        say_estimate(found, len(specs), folder)
    return Plan(name, specs, manifest)
