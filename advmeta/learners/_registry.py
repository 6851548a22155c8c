"""The learner registry (and :func:`hp`, re-exported from :mod:`advmeta.hparams`, where every config's fields are declared).

Every learner is a class registered with :func:`register_learner`; the registry discovers the
modules of :mod:`advmeta.learners`, so adding a learner is a one-file change. A learner's
hyper-parameters are a frozen dataclass ``Learner.Config`` whose fields are declared with
:func:`~advmeta.hparams.hp` (as L2L's and GAIL's configs are): each carries its documentation (and, optionally, a search range) in
``field.metadata``, so ``dataclasses.fields(cls.Config)`` is all a CLI needs to build help texts
and search spaces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar, cast

from advmeta.hparams import hp as hp  # re-exported: declared in advmeta.hparams, imported from here by the learners
from advmeta.learners._base import Learner
from advmeta.registry import Registry

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

LEARNERS: Registry[type[Learner]] = Registry("learner", "advmeta.learners")

C = TypeVar("C")
L = TypeVar("L", bound=type[Learner])


def register_learner(name: str) -> Callable[[L], L]:
    """Class decorator registering a learner under ``name`` and setting ``cls.name``."""

    def deco(cls: L) -> L:
        cls.name = name
        LEARNERS.register(name)(cls)  # returns cls itself
        return cls

    return deco


def hparams(cls: type[C]) -> type[C]:
    """Make ``cls`` a frozen dataclass and append an ``Attributes`` section built from the fields."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    lines = [(cls.__doc__ or "").rstrip(), "", "Attributes:"]
    for f in dataclasses.fields(cast("type[DataclassInstance]", cls)):  # a dataclass since the line above
        lines.append(f"    {f.name} (default {f.default!r}): {f.metadata.get('doc', '')}")
    cls.__doc__ = "\n".join(lines)
    return cls


def get_learner(name: str) -> type[Learner]:
    """The learner class registered as ``name`` (a ConfigError listing known names otherwise)."""
    return LEARNERS.get(name)


def learner_names() -> list[str]:
    """Sorted names of every registered learner."""
    return LEARNERS.names()
