"""Name → object registries whose members register themselves.

Each registry discovers its members by importing every module of one package, so adding an
attack, a learner or a dataset is a one-file change: no ``__init__`` import to remember. Modules
outside the package join the same way: ``ADVMETA_PLUGINS=mod_a,mod_b`` names modules (importable
from ``sys.path``) that every registry imports once when it first discovers its members — one
file of a user's own registers an attack, a learner or a dataset exactly as a module of the
package does (Ray's trial processes inherit the variable and find them too).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from advmeta.errors import ConfigError

T = TypeVar("T")
PLUGINS_ENV = "ADVMETA_PLUGINS"


def import_plugins() -> None:
    """Import the modules named in ``$ADVMETA_PLUGINS`` (comma-separated; already imported ones are kept).

    Raises:
        ConfigError: a module that cannot be imported (naming it and why).
    """
    for name in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"{PLUGINS_ENV}: cannot import {name}: {err}") from None


class Registry(Generic[T]):
    """A discovered mapping from names to objects of one kind (attacks, learners, ...).

    Args:
        kind: what the members are, used in error messages ("attack", "learner").
        package: dotted name of the package whose modules are imported to discover members.
    """

    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self._items: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (names are case-insensitive)."""

        def deco(obj: T) -> T:
            key = name.lower()
            if key in self._items and self._items[key] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[key] = obj
            return obj

        return deco

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self.package}.{mod.name}")
        import_plugins()

    def get(self, name: str) -> T:
        """The member called ``name``; a :class:`ConfigError` listing the known names if none."""
        self._discover()
        try:
            return self._items[name.lower()]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Sorted names of every member."""
        self._discover()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
