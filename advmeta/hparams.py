"""A method's hyper-parameters as a trial sets them, with the method's ``Config`` parsed from them once.

A trial records the hyper-parameters it *sets* (its identity hashes them, checkpoints store them)
and runs with the full, typed ``Config`` they give. :class:`HParams` is both: read as a mapping it
is what was set; :attr:`HParams.config` is the frozen ``Config`` built from it at construction.
Passing an ``HParams`` on (a trial to its trainer config, a trainer config to its learner) reuses
the parsed ``Config``: it is never rebuilt from the mapping along the way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from advmeta.errors import ConfigError


class HParams(Mapping[str, Any]):
    """The hyper-parameters a run sets (the mapping) and the ``Config`` they give (:attr:`config`).

    Args:
        config_class: the method's frozen ``Config`` dataclass.
        given: field → value for the fields the run sets (the rest keep the class defaults).
        method: the method's name, for error messages.

    Raises:
        ConfigError: a key that is not a field of ``config_class`` (the message lists the fields).
    """

    __slots__ = ("_given", "config")

    def __init__(self, config_class: type, given: Mapping[str, Any], method: str = "") -> None:
        known = [f.name for f in dataclasses.fields(config_class)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ConfigError(f"unknown hyper-parameter(s) {', '.join(map(str, unknown))}"
                              f"{' for ' + method if method else ''}; known: {', '.join(sorted(known))}")
        self._given: dict[str, Any] = dict(given)
        self.config: Any = config_class(**self._given)

    @classmethod
    def on_dataset(cls, config_class: type, dataset: str | None, given: Mapping[str, Any],
                   method: str = "") -> HParams:
        """``given`` over ``config_class``'s defaults on ``dataset`` (:func:`dataset_defaults`), which a
        trial then sets explicitly (its identity names them: α = 0.4 on Omniglot, METHODS §2)."""
        return cls(config_class, dataset_defaults(config_class, dataset) | dict(given), method)

    @classmethod
    def of(cls, config_class: type, given: Mapping[str, Any], method: str = "") -> HParams:
        """``given`` itself when it already holds a ``config_class`` (no second parse), else a new one."""
        if isinstance(given, HParams) and type(given.config) is config_class:
            return given
        return cls(config_class, given, method)

    def __getitem__(self, key: str) -> Any:
        return self._given[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._given)

    def __len__(self) -> int:
        return len(self._given)

    def __repr__(self) -> str:
        return f"HParams({self._given!r})"


def dataset_defaults(config_cls: type, dataset: str | None) -> dict[str, Any]:
    """The hyper-parameters of ``config_cls`` whose default differs on ``dataset``.

    A config declares them next to its fields, as ``DATASET_DEFAULTS = {dataset: {field: value}}``
    (a class variable, not a field); a subclass's entries extend and override its bases'.

    Args:
        config_cls: a learner's frozen ``Config`` dataclass.
        dataset: few-shot dataset name (``None`` or a name no config mentions: no changes).

    Returns:
        Field name → value, only for fields ``config_cls`` has.
    """
    out: dict[str, Any] = {}
    for klass in reversed(config_cls.__mro__):
        out.update(vars(klass).get("DATASET_DEFAULTS", {}).get(dataset or "", {}))
    fields = {f.name for f in dataclasses.fields(config_cls)}
    return {k: v for k, v in out.items() if k in fields}
