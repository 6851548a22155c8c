"""Method families: which core functions train and evaluate a method.

- ``meta``: the few-shot learners of :mod:`advmeta.learners`, trained by :func:`advmeta.train.train`
  and evaluated by :func:`advmeta.evaluate.evaluate` (:mod:`advmeta.tune.family_meta`).
- ``l2l``: the L2L trainers of :mod:`advmeta.l2l` (:mod:`advmeta.tune.family_l2l`).
- ``gail``: GAIL and L2L-GAIL of :mod:`advmeta.gail` (:mod:`advmeta.tune.family_gail`); their
  rows are learning curves (the ``curves`` table), not accuracies.

More families come from outside the package through ``ADVMETA_FAMILIES`` (``name=module``,
comma-separated): the tests register their fake, millisecond ``toy`` family this way
(``tests/toy_family.py``). The variable is read at each lookup, so Ray's worker processes,
which inherit the driver's environment, find the same families.

Each family module exposes ``methods() -> list[str]``, ``config_class(method) -> type`` (a
dataclass whose fields are the tunable hyper-parameters) and ``run(spec, ctx, report)``, which
returns a :class:`TrialOutput` (or the plain tuple of its first three fields).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, Protocol

from advmeta.errors import ConfigError

_BUILT_IN = {"meta": "advmeta.tune.family_meta", "l2l": "advmeta.tune.family_l2l", "gail": "advmeta.tune.family_gail"}
FAMILIES_ENV = "ADVMETA_FAMILIES"

Report = Callable[[dict[str, Any], "Path | None"], None]
"""``report(metrics, checkpoint_path_or_None)``: what a family calls at each validation."""


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
    """

    sweep_dir: str
    work_dir: str = ""
    data_root: str | None = None
    device: str = "auto"
    threads: int = 1
    banks: dict[str, str] = field(default_factory=dict)
    progress: bool = False


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
    """What a family module provides."""

    def methods(self) -> list[str]: ...
    def config_class(self, method: str) -> type: ...
    def run(self, spec: Any, ctx: RunContext, report: Report) -> TrialOutput | tuple[Any, Any, Any]: ...


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


def get_family(name: str) -> ModuleType:
    """The module of family ``name``."""
    modules = registered()
    if name not in modules:
        raise ConfigError(f"unknown method family {name!r}; known: {', '.join(modules)}")
    try:
        return importlib.import_module(modules[name])
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


def config_class(method: str) -> type:
    """The hyper-parameter dataclass of ``method``."""
    cls: type = get_family(family_of(method)).config_class(method)
    return cls
