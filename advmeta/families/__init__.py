"""Method families: which core functions train and evaluate a method.

- ``meta``: the few-shot learners of :mod:`advmeta.learners`, trained by :func:`advmeta.train.train`
  and evaluated by :func:`advmeta.evaluate.evaluate` (:mod:`advmeta.families.meta`).
- ``l2l``: the L2L trainers of :mod:`advmeta.l2l` (:mod:`advmeta.families.l2l`).
- ``gail``: GAIL and L2L-GAIL of :mod:`advmeta.gail` (:mod:`advmeta.families.gail`); their
  rows are learning curves (the ``curves`` table), not accuracies.

More families come from outside the package through ``ADVMETA_FAMILIES`` (``name=module``,
comma-separated): the tests register their fake, millisecond ``toy`` family this way
(``tests/toy_family.py``). The variable is read at each lookup, so Ray's worker processes,
which inherit the driver's environment, find the same families.

Each family module implements :class:`Family`: its methods and their hyper-parameter dataclasses,
its trials' training settings and budget hyper-parameters, what ``advmeta tune`` evaluates, a cost
estimate, and ``run(spec, ctx, report)``, which returns a :class:`TrialOutput` (or the plain tuple
of its first three fields).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, cast

from advmeta.eps import Epsilon
from advmeta.errors import ConfigError
from advmeta.loop import Report as Report  # ``report(metrics, checkpoint_path_or_None)``, as the core's trainers call it

_BUILT_IN = {"meta": "advmeta.families.meta", "l2l": "advmeta.families.l2l", "gail": "advmeta.families.gail"}
FAMILIES_ENV = "ADVMETA_FAMILIES"


@dataclass(frozen=True)
class RunContext:
    """Where and how trials run; not part of a trial's identity.

    Attributes:
        sweep_dir: the sweep's folder (local path or URI): ledger, results.
        work_dir: a local folder for the trial's training state (checkpoints).
        data_root: data folder (``None``: ``$ADVMETA_DATA`` → the per-user cache).
        device: ``auto`` | ``cpu`` | ``cuda``.
        threads: torch threads for the trial (its CPUs).
        banks: episode-bank paths by purpose (``test``, ``train``), or empty.
        progress: let the core print its own progress (never inside Ray trials).
        episodes: standard test-episode manifests (files or built-in names, ``--episodes``): a
            trial's test evaluations use the one of its dataset and shape
            (:func:`advmeta.data.manifest.select`); empty: episodes drawn from the seed.
    """

    sweep_dir: str
    work_dir: str = ""
    data_root: str | None = None
    device: str = "auto"
    threads: int = 1
    banks: dict[str, str] = field(default_factory=dict)
    progress: bool = False
    episodes: tuple[str, ...] = ()


class TrialOutput(NamedTuple):
    """What a family's ``run`` returns: summary rows, per-episode rows, final metrics, the
    gradient-masking checks of its white-box evaluations (``checks`` table; none for a family
    without them) and its learning curve (``curves`` table: one row per training iteration;
    the GAIL family's result)."""

    rows: list[dict[str, Any]]
    episodes: list[dict[str, Any]]
    final: dict[str, Any]
    checks: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []


class Family(Protocol):
    """What a family module (``advmeta/families/<name>.py``) provides; :func:`get_family` returns one.

    Everything the Ray layer does differently per kind of trainer is here, so that grids, the
    search space and the runner never branch on a family's name.
    """

    def methods(self) -> list[str]:
        """The methods of the family."""
        ...

    def config_class(self, method: str) -> type:
        """A dataclass whose fields are ``method``'s tunable hyper-parameters."""
        ...

    def scenarios(self) -> tuple[str, ...]:
        """The evaluation scenarios this family's trials run (a grid's ``scenario =``; the first
        family to name one owns it: its :meth:`check_attack`, :meth:`eval_defaults`, :meth:`budget_attacks`)."""
        ...

    def check_attack(self, scenario: str, attack: str) -> None:
        """:class:`ConfigError` naming an attack that ``scenario`` cannot run (this and the next two:
        only a family with scenarios of its own, :data:`SCENARIO_MEMBERS`)."""
        ...

    def eval_defaults(self, budget: Any, scenario: str) -> dict[str, Any]:
        """The budget's settings of a ``scenario`` evaluation that a grid's own values override."""
        ...

    def budget_attacks(self, budget: Any, scenario: str, attacks: list[str]) -> list[str]:
        """The attacks a ``scenario`` evaluation runs at ``budget`` (some budgets leave costly ones out)."""
        ...

    def uses_dataset(self, method: str) -> bool:
        """Whether ``method``'s trials read a dataset (else a sweep of them chooses none)."""
        ...

    def trains_on_surrogate(self, method: str) -> bool:
        """Whether ``method`` trains on the fixed surrogate's FGSM images (then it trains at ADML's table ε)."""
        ...

    def bank_requirements(self, spec: Any) -> list[dict[str, Any]]:
        """The episode banks ``spec``'s trial reads (made once per sweep, :mod:`advmeta.tune.banks`)."""
        ...

    def train_settings(self, budget: Any, method: str, axes: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's training settings from the budget under a table's axes (``dataset``, ``n_way``, ``k_shot``)."""
        ...

    def budget_hparams(self, budget: Any) -> dict[str, Any]:
        """Hyper-parameters the budget sets (applied where a method has the field)."""
        ...

    def search_evals(self, budget: Any, attacks: list[str], test_eps: list[Epsilon] | None,
                     sweep: str) -> tuple[dict[str, Any], ...]:
        """What ``advmeta tune`` evaluates (``test_eps`` None: the family's default ε)."""
        ...

    def train_cost(self, spec: Any) -> float:
        """A trial's expected training seconds on one core (orders the trials: longest first)."""
        ...

    def run(self, spec: Any, ctx: RunContext, report: Report) -> TrialOutput | tuple[Any, Any, Any]:
        """Train and evaluate one trial."""
        ...


SCENARIO_MEMBERS = ("check_attack", "eval_defaults", "budget_attacks")
"""What a family that owns evaluation scenarios (:meth:`Family.scenarios` not empty) defines too."""
FAMILY_MEMBERS = tuple(name for name in vars(Family) if not name.startswith("_") and name not in SCENARIO_MEMBERS)
"""What every family module defines (checked over every registered family by the tests)."""


def registered() -> dict[str, str]:
    """Family name → module: the built-in ones, then those of ``$ADVMETA_FAMILIES``.

    Raises:
        ConfigError: a malformed ``ADVMETA_FAMILIES`` entry, or one that redefines a built-in family.
    """
    out = dict(_BUILT_IN)
    for entry in filter(None, (e.strip() for e in os.environ.get(FAMILIES_ENV, "").split(","))):
        name, sep, module = (part.strip() for part in entry.partition("="))
        if not sep or not name or not module:
            raise ConfigError(f"{FAMILIES_ENV}: {entry!r} is not name=module")
        if name in _BUILT_IN:
            raise ConfigError(f"{FAMILIES_ENV}: {name!r} is a built-in family")
        out[name] = module
    return out


def get_family(name: str) -> Family:
    """The module of family ``name``."""
    modules = registered()
    if name not in modules:
        raise ConfigError(f"unknown method family {name!r}; known: {', '.join(modules)}")
    try:
        return cast(Family, importlib.import_module(modules[name]))
    except ImportError as e:
        if name in _BUILT_IN:
            raise
        raise ConfigError(f"family {name!r} ({FAMILIES_ENV}): cannot import {modules[name]}: {e}") from None


def family_of(method: str) -> str:
    """The family a method belongs to; :class:`ConfigError` listing every method if none."""
    for name in registered():
        try:
            if method in get_family(name).methods():
                return name
        except ImportError:
            continue  # a part of the core not installed yet: its methods are unknown
    raise ConfigError(f"unknown method {method!r}; known: {', '.join(all_methods())}")


def all_methods() -> list[str]:
    """Every method of every registered family."""
    names: list[str] = []
    for fam in registered():
        try:
            names += get_family(fam).methods()
        except ImportError:
            continue
    return names


def scenario_owners() -> dict[str, Family]:
    """Every evaluation scenario → the family that runs it (the first registered to name it)."""
    out: dict[str, Family] = {}
    for fam in registered():
        try:
            module = get_family(fam)
        except ImportError:
            continue
        for scenario in module.scenarios():
            out.setdefault(scenario, module)
    return out


def config_class(method: str) -> type:
    """The hyper-parameter dataclass of ``method``."""
    return resolve(method).config_class


@dataclass(frozen=True)
class MethodRef:
    """A method resolved once: its ``name``, its family's name (``family_name``) and module
    (``family``) and its hyper-parameter dataclass (``config_class``). Planning resolves a method
    when a request names it and passes this on."""

    name: str
    family_name: str
    family: Family
    config_class: type


def resolve(method: str | MethodRef) -> MethodRef:
    """``method`` resolved (a :class:`MethodRef` is returned as it is).

    Raises:
        ConfigError: an unknown method (the message lists every method).
    """
    if isinstance(method, MethodRef):
        return method
    name = family_of(method)
    module = get_family(name)
    return MethodRef(method, name, module, module.config_class(method))
