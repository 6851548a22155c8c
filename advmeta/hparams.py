"""A method's hyper-parameters as a trial sets them, with the method's ``Config`` parsed from them once.

A trial records the hyper-parameters it *sets* (its identity hashes them, checkpoints store them)
and runs with the full, typed ``Config`` they give. :class:`HParams` is both: read as a mapping it
is what was set; :attr:`HParams.config` is the frozen ``Config`` built from it at construction.
Passing an ``HParams`` on (a trial to its trainer config, a trainer config to its learner) reuses
the parsed ``Config``: it is never rebuilt from the mapping along the way.

Every ``Config`` (the learners', :class:`~advmeta.l2l.L2LConfig`, :class:`~advmeta.gail.GAILConfig`)
declares its fields with :func:`hp`: each carries its documentation (and, optionally, a search
range or a closed set of values) in ``field.metadata``, so ``dataclasses.fields(Config)`` is all a
CLI needs to build help texts and search spaces. A field's kind (float, int, bool, text, ε) is
read from its declared type (:func:`typed_fields`, with :func:`typing.get_type_hints`), and every
value an :class:`HParams` is given is checked against it (:func:`check_value`).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from advmeta.eps import EPS_BUDGET, EPS_STEP, Epsilon, check_eps_value
from advmeta.errors import ConfigError


def hp(
    default: Any = dataclasses.MISSING,
    doc: str | None = None,
    *,
    factory: Callable[[], Any] | None = None,
    low: float | None = None,
    high: float | None = None,
    log: bool = False,
    choices: Sequence[Any] | None = None,
) -> Any:
    """A documented hyper-parameter field.

    Args:
        default: the default value ([choice] defaults of docs/methods.md are marked so in ``doc``);
            leave it out for a mutable default and give ``factory`` instead.
        doc: one-line meaning of the field (shown by the CLI; a learner's ``@hparams`` copies it into
            the class docstring).
        factory: a function of no arguments making the default (``dataclasses.field(default_factory=...)``),
            for mutable defaults such as dicts: ``hp(doc="...", factory=dict)``.
        low: lower end of the natural search range (numbers only).
        high: upper end of the natural search range.
        log: whether the range is searched on a log scale.
        choices: the closed set of allowed values (strings, booleans).

    Returns:
        A ``dataclasses.field`` whose ``metadata`` holds ``doc``, ``low``, ``high``, ``log``, ``choices``.

    Raises:
        TypeError: no ``doc``, or not exactly one of ``default`` and ``factory``.
    """
    if doc is None:
        raise TypeError("hp() needs a doc")
    if (default is dataclasses.MISSING) == (factory is None):
        raise TypeError("hp() takes exactly one of a default and a factory")
    meta = {"doc": doc, "low": low, "high": high, "log": log,
            "choices": tuple(choices) if choices is not None else None}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def copy_field(f: dataclasses.Field[Any]) -> Any:
    """A new field with ``f``'s default (or default factory) and metadata (its doc, range, choices),
    for a dataclass made of some of another's fields (``dataclasses.make_dataclass``)."""
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
    return dataclasses.field(default=f.default, metadata=f.metadata)


def tunable_class(config_class: type, name: str, leave_out: Iterable[str], module: str) -> type:
    """A frozen dataclass of ``config_class``'s fields but ``leave_out`` (the run's settings), each
    with its default and metadata: what a trainer's hyper-parameters are (``advmeta tune … --params``).

    Args:
        config_class: the trainer's whole config (``L2LConfig``, ``GAILConfig``).
        name: the new class's name.
        leave_out: fields that are settings of the run (the budget's or the sweep's), not hyper-parameters.
        module: the module that makes it, and that returns it for ``name`` from its ``__getattr__``
            (so a pickled ``HParams`` of it loads in another process).
    """
    skip = set(leave_out)
    hints = typing.get_type_hints(config_class, include_extras=True)  # resolved: the new class lives elsewhere
    keep = [(f.name, hints[f.name], copy_field(f)) for f in dataclasses.fields(config_class) if f.name not in skip]
    cls = dataclasses.make_dataclass(name, keep, frozen=True)
    cls.__module__ = module
    return cls


class HParams(Mapping[str, Any]):
    """The hyper-parameters a run sets (the mapping) and the ``Config`` they give (:attr:`config`).

    Args:
        config_class: the method's frozen ``Config`` dataclass.
        given: field → value for the fields the run sets (the rest keep the class defaults).
        method: the method's name, for error messages.

    Raises:
        ConfigError: a key that is not a field of ``config_class`` (the message lists the fields),
            or a value its field's declared type and metadata rule out (:func:`check_value`).
    """

    __slots__ = ("_values", "config")

    def __init__(self, config_class: type, given: Mapping[str, Any], method: str = "") -> None:
        # The Config gets the values as given: an Epsilon (the option's, the ε plan's) stays one, down to
        # the training attack, which parses nothing. The mapping names an ε by its canonical k/255 text:
        # what the trial's id hashes and a checkpoint stores.
        values = _values(given)
        known = [f.name for f in dataclasses.fields(config_class)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown hyper-parameter(s) {', '.join(map(str, unknown))}"
                              f"{' for ' + method if method else ''}; known: {', '.join(sorted(known))}")
        typed = typed_fields(config_class)
        for name, value in values.items():  # each value against its field's declared type and metadata
            check_value(typed[name], value, f"{method + ' ' if method else ''}{name}")
        self._values: dict[str, Any] = values
        self.config: Any = config_class(**values)

    @classmethod
    def on_dataset(cls, config_class: type, dataset: str | None, given: Mapping[str, Any],
                   method: str = "") -> HParams:
        """``given`` over ``config_class``'s defaults on ``dataset`` (:func:`dataset_defaults`), which a
        trial then sets explicitly (its identity names them: α = 0.4 on Omniglot, docs/methods.md#maml)."""
        return cls(config_class, dataset_defaults(config_class, dataset) | _values(given), method)

    @classmethod
    def of(cls, config_class: type, given: Mapping[str, Any], method: str = "") -> HParams:
        """``given`` itself when it already holds a ``config_class`` (no second parse), else a new one."""
        if isinstance(given, HParams) and type(given.config) is config_class:
            return given
        return cls(config_class, given, method)

    def __getitem__(self, key: str) -> Any:
        return _as_written(self._values[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"HParams({dict(self)!r})"

    def __copy__(self) -> HParams:
        return self  # immutable: a copy (``dataclasses.asdict`` of a run's config) is the same, not parsed again

    def __deepcopy__(self, memo: dict[int, Any]) -> HParams:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # By the Config class's name, made and checked again on loading (the same frozen Config): a learner
        # from a plugin file (ADVMETA_PLUGINS) is imported first where the loading process has not yet.
        cls = type(self.config)
        return (_hparams_of, (cls.__module__, cls.__qualname__, self._values))  # an Epsilon goes as one


def _values(given: Mapping[str, Any]) -> dict[str, Any]:
    """What ``given`` sets, an ε as the Epsilon it was given as (an HParams' mapping names it by its text)."""
    return dict(given._values) if isinstance(given, HParams) else dict(given)


def _as_written(value: Any) -> Any:
    """A value as a trial's id, a checkpoint and a result row name it: an ε as its ``k/255`` text."""
    return value.text if isinstance(value, Epsilon) else value


def config_values(config: Any) -> dict[str, Any]:
    """A ``Config``'s fields as plain values, each ε as its ``k/255`` text: what a checkpoint stores
    (it holds no advmeta type, so that loading it runs no code of ours) and a result row records."""
    return {k: _as_written(v) for k, v in dataclasses.asdict(config).items()}


def _hparams_of(module: str, qualname: str, given: dict[str, Any]) -> HParams:
    """An unpickled :class:`HParams`: its Config class found by name (after the plugins where needed)."""
    import importlib

    try:
        found: Any = importlib.import_module(module)
    except ImportError:
        from advmeta.registry import import_plugins

        import_plugins()  # a plugin file is imported under its stem, which is the module name here
        found = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return HParams(found, given)


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


def check_value(field: TypedField, value: Any, what: str) -> None:
    """A hyper-parameter value against its field: its declared type, the sign its range
    (``low``/``high``) implies, its choices. What :class:`HParams` checks.

    Raises:
        ConfigError: the wrong type (a string for a float, …) or a value outside the range.
    """
    if value is None and field.type.optional:
        return
    if not field.type.scalar:
        return  # structured values are checked by the learner itself
    meta: Mapping[str, Any] = field.metadata
    choices = meta.get("choices")
    if choices is not None:
        if value not in choices:
            raise ConfigError(f"{what} must be one of {', '.join(map(str, choices))}, got {value!r}")
        return
    kind = field.type.kind
    if kind is Kind.EPS:
        if isinstance(value, str) and value.strip() == "eps":
            return  # "eps": tied to the training ε (AQ-style step sizes)
        check_eps_value(value, what)
        return
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise ConfigError(f"{what} must be true or false, got {value!r}")
        return
    if kind in (Kind.INT, Kind.FLOAT):
        ok = isinstance(value, int) if kind is Kind.INT else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            raise ConfigError(f"{what} must be {'a whole number' if kind is Kind.INT else 'a number'}, got {value!r}")
        # The fields' low/high are search ranges, not limits; what they do rule out is the sign:
        # a count whose range starts at 1 is >= 1, a value whose range starts at >= 0 is >= 0.
        low = meta.get("low")
        if low is not None and low >= 1 and kind is Kind.INT and value < 1:
            raise ConfigError(f"{what} must be >= 1, got {value!r}")
        if low is not None and low >= 0 and value < 0:
            raise ConfigError(f"{what} must be >= 0, got {value!r}")
        return
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be text, got {value!r}")


class Kind(str, Enum):
    """How the text of one value is read."""

    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    STR = "str"
    EPS = "eps"


@dataclass(frozen=True)
class FieldType:
    """What a config field's declared type says, read with :func:`typing.get_type_hints` (never
    from the annotation's text).

    Attributes:
        kind: how one value of it is read (a tuple's: its items').
        budget: an ε budget (typed :data:`advmeta.eps.Eps`), whatever the field's name.
        step: an attack's step size written as an ε (typed :data:`advmeta.eps.EpsStep`).
        optional: it may be None.
        scalar: one value (a tuple, list or dict is not, and is not tunable from the command line).
    """

    kind: Kind
    budget: bool = False
    step: bool = False
    optional: bool = False
    scalar: bool = True


@dataclass(frozen=True)
class TypedField:
    """A field of a config dataclass with its :class:`FieldType`, default (``dataclasses.MISSING``
    when it has none) and metadata (``doc``, ``low``/``high``, ``choices``, ``log``)."""

    name: str
    type: FieldType
    default: Any
    metadata: Mapping[str, Any]


def typed_fields(cls: type) -> dict[str, TypedField]:
    """Every field of the dataclass ``cls``, typed (resolved once per class).

    Raises:
        ConfigError: a field annotation that does not resolve (a name its module does not define).
    """
    return dict(_typed_fields(cls))


@functools.cache
def _typed_fields(cls: type) -> tuple[tuple[str, TypedField], ...]:
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except NameError as err:
        raise ConfigError(f"{cls.__qualname__}: a field's type does not resolve ({err})") from None
    out = []
    for f in dataclasses.fields(cls):
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        out.append((f.name, TypedField(f.name, field_type(hints[f.name]), default, dict(f.metadata or {}))))
    return tuple(out)


def field_type(hint: Any) -> FieldType:
    """The :class:`FieldType` of a resolved type hint (``Eps``, ``int | None``, ``tuple[float, ...]`` …)."""
    roles: set[str] = set()
    optional, scalar = False, True
    while True:
        origin = typing.get_origin(hint)
        if origin is typing.Annotated:
            hint, *meta = typing.get_args(hint)
            roles |= {m for m in meta if isinstance(m, str)}
        elif origin in (typing.Union, types.UnionType):
            args = typing.get_args(hint)
            rest = [a for a in args if a is not type(None)]
            optional = optional or len(rest) < len(args)
            if len(rest) == 1:
                hint = rest[0]
                continue
            # a union of several types (ε's float | int | str): its role decides, else its first member
            for a in rest:
                if typing.get_origin(a) is typing.Annotated:
                    roles |= {m for m in typing.get_args(a)[1:] if isinstance(m, str)}
            hint = rest[0]
            if typing.get_origin(hint) is typing.Annotated:
                continue
            break
        elif origin in (tuple, list, set, frozenset, collections.abc.Sequence):
            scalar = False
            items = [a for a in typing.get_args(hint) if a is not Ellipsis]
            hint = items[0] if items else str
        elif origin in (dict, collections.abc.Mapping):
            return FieldType(Kind.STR, optional=optional, scalar=False)
        else:
            break
    if EPS_BUDGET in roles or EPS_STEP in roles:
        return FieldType(Kind.EPS, budget=EPS_BUDGET in roles and EPS_STEP not in roles and scalar,
                         step=EPS_STEP in roles, optional=optional, scalar=scalar)
    kinds = {bool: Kind.BOOL, int: Kind.INT, float: Kind.FLOAT}
    return FieldType(kinds.get(hint, Kind.STR), optional=optional, scalar=scalar)
