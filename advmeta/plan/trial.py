"""One trial of a sweep: what is trained, how it is evaluated, and its stable id.

A :class:`TrialSpec` is made once, when a grid or ``advmeta tune`` expands (its method's
``Config``, training settings and evaluations typed and checked there), and reaches the trial's
process unchanged: it is the trial's Ray Tune config itself. Its JSON form (:meth:`TrialSpec.to_dict`)
is written next to the trial's results and in the sweep's manifest (``--resume`` reads it back),
and hashes to the same ``trial_id`` on every machine and on every re-run of a sweep — the key of
the completion ledger (:mod:`advmeta.ledger`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, cast

from advmeta.eps import PENDING, Epsilon, format_eps
from advmeta.errors import ConfigError
from advmeta.hparams import HParams


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


class _Unset:
    """The value of a :class:`TrainSettings` or :class:`EvalSettings` field that a trial does not set."""

    def __repr__(self) -> str:
        return "UNSET"

    def __reduce__(self) -> str:
        return "UNSET"  # the one instance, also after pickling (a trial's spec travels to its process)

    def __copy__(self) -> _Unset:
        return self

    def __deepcopy__(self, memo: Any) -> _Unset:
        return self


UNSET: Any = _Unset()


@dataclass(frozen=True, eq=False)
class _Settings(Mapping[str, Any]):
    """Typed fields of which a trial sets some (the rest are :data:`UNSET`), read as the mapping
    of the fields set — what a trial's identity hashes, so an unset field and an absent key are
    the same trial. Subclasses list the fields; :meth:`of` rejects an unknown key, naming it."""

    _WHAT = "setting"

    @classmethod
    def names(cls) -> frozenset[str]:
        """Every field name."""
        return _field_names(cls)

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Any:
        """The settings of a mapping; :class:`ConfigError` naming any unknown key."""
        if isinstance(data, cls):
            return data
        unknown = sorted(set(data) - cls.names())
        if unknown:
            raise ConfigError(f"unknown {cls._WHAT}(s) {', '.join(map(str, unknown))}; "
                              f"known: {', '.join(sorted(cls.names()))}")
        return cls(**dict(data))

    def __getitem__(self, key: str) -> Any:
        value = getattr(self, key, UNSET) if key in self.names() else UNSET
        if value is UNSET:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return (f.name for f in fields(self) if getattr(self, f.name) is not UNSET)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self)!r})"


@dataclass(frozen=True, eq=False, repr=False)
class TrainSettings(_Settings):
    """A trial's training settings (see :class:`_Settings`).

    Made once when a grid or ``advmeta tune`` makes the trial, carried unchanged to the
    trainable, where the family turns it into its trainer's config
    (:class:`advmeta.train.TrainConfig`, ``L2LConfig``, ``GAILConfig``).
    """

    _WHAT = "training setting"

    # every family
    seed: int = UNSET
    budget: str = UNSET
    dataset: str = UNSET
    image_size: int | None = UNSET
    iterations: int = UNSET
    checkpoint_every: int = UNSET
    # few-shot (meta) trials: the fields of TrainConfig a trial may set
    n_way: int = UNSET
    k_shot: int = UNSET
    q_query: int = UNSET
    meta_batch: int = UNSET
    val_every: int = UNSET
    val_episodes: int = UNSET
    meta_lr: float = UNSET
    backbone: str | None = UNSET
    width: int | None = UNSET
    bn_mode: str = UNSET
    split_scheme: str | None = UNSET
    surrogate_arch: str = UNSET
    surrogate_steps: int = UNSET
    surrogate_classes: str = UNSET
    # L2L trials
    epochs: int = UNSET
    classifier: str = UNSET
    classifier_kwargs: Mapping[str, Any] = UNSET
    attacker: str = UNSET
    num_classes: int | None = UNSET
    train_per_class: int | None = UNSET
    test_per_class: int | None = UNSET
    eval_batches: int | None = UNSET
    # GAIL trials
    batch_steps: int | None = UNSET
    n_envs: int = UNSET


@dataclass(frozen=True, eq=False, repr=False)
class EvalSettings(_Settings):
    """One evaluation of a trial (a grid's ``[[tables.evals]]`` with the budget's numbers filled
    in, see :func:`advmeta.plan.settings.eval_settings`); the family turns it into its protocol."""

    _WHAT = "evaluation setting"

    scenario: str = UNSET
    """whitebox | surrogate | support | support+query | l2l."""
    attacks: list[str] = UNSET
    eps: list[Any] = UNSET
    """ε of the evaluation (:class:`~advmeta.eps.Epsilon` s; a dry run's pending calibration: ``"eps*"``)."""
    eps_source: str = UNSET
    """Where the ε came from: paper | calibrated | grid | user."""
    support: list[str] = UNSET
    query: list[str] = UNSET
    episodes: int = UNSET
    split: str = UNSET
    q_query: int = UNSET
    attack_steps: int | None = UNSET
    attack_params: Mapping[str, Any] = UNSET
    checks: Any = UNSET
    """The masking checks' settings (a mapping of CheckSettings fields), or False."""
    n_test: int | None = UNSET
    seeds: list[int] = UNSET
    eps_curve: list[Any] = UNSET
    steps_curve: list[int] = UNSET

    def __post_init__(self) -> None:
        for name in ("eps", "eps_curve"):  # each ε made an Epsilon once, here (its id hashes the text)
            values = getattr(self, name)
            if values is not UNSET:
                object.__setattr__(self, name, [v if v == PENDING else Epsilon(v) for v in values])


def _canonical(value: Any) -> Any:
    """Sort dict keys recursively and turn tuples into lists, so equal specs hash equally."""
    if isinstance(value, Epsilon):
        return value.text  # an ε is named by its canonical k/255
    if isinstance(value, Mapping):
        return {str(k): _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return value  # keep 2.0 as a float: the dataclass field decides the type
    return value


@dataclass(frozen=True)
class TrialSpec:
    """Everything that defines one trial (paths and devices are not part of it).

    Attributes:
        sweep: the sweep's name (grid name or ``tune-<method>``).
        family: ``meta`` (advmeta.train/evaluate), ``l2l`` (advmeta.l2l), ``gail`` (advmeta.gail)
            or one registered through ``ADVMETA_FAMILIES`` (the tests' ``toy``).
        method: learner or trainer name.
        hparams: the method's hyper-parameters the trial sets (:class:`~advmeta.hparams.HParams`:
            read as the mapping of what is set, which the id hashes; ``hparams.config`` is the
            method's typed ``Config``, parsed once — where the planner made the ``HParams``, or
            here from a mapping, where an unknown field is a :class:`ConfigError`).
        train: training settings (:class:`TrainSettings`; a mapping is converted, and an unknown
            key is a :class:`ConfigError`).
        evals: evaluation protocols (:class:`EvalSettings`; mappings are converted, and an
            unknown key is a :class:`ConfigError`).
        budget: the budget level the numbers come from.
        table: names of the grid tables that asked for this trial.
        resources: what the trial runs with (:class:`Resources`: the sweep's
            CPUs and GPUs per trial, resolved against the cluster by the runner before the trial
            starts; its process sets its threads from them). Not part of the trial's identity.
    """

    sweep: str
    family: str
    method: str
    hparams: Mapping[str, Any]
    train: TrainSettings
    evals: tuple[EvalSettings, ...] = ()
    budget: str = "quick"
    table: tuple[str, ...] = field(default=(), compare=False)
    resources: Resources | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.hparams, HParams):  # a mapping (a spec read back): its Config parsed once, here
            from advmeta.families import get_family

            config_class = get_family(self.family).config_class(self.method)
            object.__setattr__(self, "hparams", HParams(config_class, self.hparams, self.method))
        object.__setattr__(self, "train", TrainSettings.of(self.train))
        object.__setattr__(self, "evals", tuple(EvalSettings.of(e) for e in self.evals))

    @property
    def config(self) -> Any:
        """The method's typed ``Config`` (parsed once, when the spec was made)."""
        return cast(HParams, self.hparams).config

    def identity(self) -> dict[str, Any]:
        """The fields the trial id is a hash of (not the sweep's name or its tables)."""
        ident: dict[str, Any] = _canonical({"family": self.family, "method": self.method, "hparams": dict(self.hparams),
                                            "train": dict(self.train), "evals": [dict(e) for e in self.evals],
                                            "budget": self.budget})
        return ident

    @property
    def trial_id(self) -> str:
        """12 hex digits of the SHA-256 of :meth:`identity`; stable across machines and runs."""
        text = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """A short human description: ``tafl 5w1s gamma=2 k=1``."""
        shots = f"{self.train.get('n_way', '?')}w{self.train.get('k_shot', '?')}s" if "k_shot" in self.train else ""
        hp = " ".join(f"{k}={_short(v)}" for k, v in sorted(self.hparams.items()))
        # Trials without a few-shot shape (L2L, GAIL) name their seed instead.
        seed = f"seed={self.train['seed']}" if not shots and "seed" in self.train else ""
        return " ".join(p for p in (self.method, shots, hp, seed) if p)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what Ray Tune's config carries)."""
        out = self.identity()
        out.update({"sweep": self.sweep, "table": list(self.table), "trial_id": self.trial_id})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialSpec:
        """Inverse of :meth:`to_dict` (the ``trial_id`` key, if any, is recomputed, not trusted)."""
        return cls(
            sweep=str(data["sweep"]), family=str(data["family"]), method=str(data["method"]),
            hparams=dict(data.get("hparams", {})), train=TrainSettings.of(dict(data.get("train", {}))),
            evals=tuple(EvalSettings.of(dict(e)) for e in data.get("evals", ())), budget=str(data.get("budget", "quick")),
            table=tuple(data.get("table", ())),
        )

    def with_evals(self, evals: tuple[Mapping[str, Any], ...]) -> TrialSpec:
        """A copy with other evaluation protocols."""
        return TrialSpec(self.sweep, self.family, self.method, self.hparams, self.train,
                         tuple(EvalSettings.of(e) for e in evals), self.budget, self.table, self.resources)


def _short(value: Any) -> str:
    if isinstance(value, Epsilon):
        return value.text
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and "/" in value:
        try:
            return format_eps(value)
        except Exception:  # noqa: BLE001 - a label never fails
            return value
    return str(value)


@dataclass(frozen=True)
class Resources:
    """Per-trial resources and what the cluster offers."""

    cpus_per_trial: float
    gpus_per_trial: float
    cluster_cpus: float
    cluster_gpus: float

    @property
    def max_concurrent(self) -> int:
        """How many trials fit on the cluster at once."""
        by_cpu = self.cluster_cpus / self.cpus_per_trial if self.cpus_per_trial > 0 else float("inf")
        by_gpu = self.cluster_gpus / self.gpus_per_trial if self.gpus_per_trial > 0 else float("inf")
        n = min(by_cpu, by_gpu)
        return max(1, int(n + 1e-9)) if n != float("inf") else 1

    def as_tune(self) -> dict[str, float]:
        """The ``tune.with_resources`` request."""
        return {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}
