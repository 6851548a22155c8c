"""Name → object registries whose members register themselves.

Each registry discovers its members by importing every module of one package, so adding an
attack, a learner or a dataset is a one-file change: no ``__init__`` import to remember. Files
outside the package join the same way: ``ADVMETA_PLUGINS`` names, comma-separated, Python files
(``/path/to/my_learner.py``) or modules importable from ``sys.path`` (``my_package.my_learner``)
that every registry imports once when it first discovers its members — one file of a user's own
registers an attack, a learner or a dataset exactly as a module of the package does. Ray's trial
processes inherit the variable and import the same files (on a cluster, every node needs them at
the same path). Writing one: ``docs/plugins.md``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

from advmeta.errors import ConfigError

T = TypeVar("T")
PLUGINS_ENV = "ADVMETA_PLUGINS"


def plugin_entries() -> list[str]:
    """The entries of ``$ADVMETA_PLUGINS``: file paths and module names, in order."""
    return [e for e in (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",")) if e]


def _is_path(entry: str) -> bool:
    return entry.endswith(".py") or os.sep in entry or (os.altsep is not None and os.altsep in entry)


def _import_file(entry: str) -> None:
    """Import the Python file ``entry`` as the module named after its stem (its folder joins
    ``sys.path``, so that objects pickled from it — a plugin learner's config in a trial — load by
    that name in this process and in the processes it starts)."""
    path = Path(entry).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"{PLUGINS_ENV}: no file {entry}" + ("" if entry.endswith(".py") else
                                                                " (a module name has no '/'; a file ends in .py)"))
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", "") or "").resolve() == path:
            return
        raise ConfigError(f"{PLUGINS_ENV}: {entry}: a module named {name!r} is already imported "
                          f"(from {getattr(loaded, '__file__', None) or 'built in'}); rename the file")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{PLUGINS_ENV}: {entry} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise


def import_plugins() -> None:
    """Import the files and modules named in ``$ADVMETA_PLUGINS`` (already imported ones are kept).

    Raises:
        ConfigError: a file that does not exist, a module that cannot be imported, or one that
            fails while importing — one line naming it and why.
    """
    entries = plugin_entries()
    for entry in entries:
        try:
            if _is_path(entry):
                _import_file(entry)
            else:
                importlib.import_module(entry)
        except ConfigError:
            raise
        except ImportError as err:
            raise ConfigError(f"{PLUGINS_ENV}: cannot import {entry}: {err}") from None
        except Exception as err:  # the plugin's own code failed: name it, not a traceback
            where = ""
            tb = err.__traceback__
            while tb is not None:
                where = f" (line {tb.tb_lineno})" if tb.tb_frame.f_code.co_filename.endswith(Path(entry).name) else where
                tb = tb.tb_next
            raise ConfigError(f"{PLUGINS_ENV}: {entry} failed while importing{where}: {type(err).__name__}: {err}") from None
    if entries:  # processes started from here (Ray's trials) find the same files whatever their folder
        os.environ[PLUGINS_ENV] = ",".join(str(Path(e).expanduser().resolve()) if _is_path(e) else e for e in entries)


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
