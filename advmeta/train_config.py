"""The description of a meta-training run: :class:`TrainConfig` (what it computes) and
:data:`RUN_ONLY_FIELDS` (where and how it runs).

Its own module so that :mod:`advmeta.train` and :mod:`advmeta.train_bank` both import it and
neither imports the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from advmeta.errors import ConfigError
from advmeta.hparams import HParams, dataset_defaults
from advmeta.surrogate import DEFAULT_ARCH


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a meta-training run (learner, model, data, budget, seed).

    Attributes:
        method: registered learner name (``maml``, ``aq``, ``tafl``, …).
        hparams: the learner's hyper-parameters the run sets (fields of ``get_learner(method).Config``),
            over the learner's defaults on ``dataset`` (its ``DATASET_DEFAULTS``: on Omniglot the
            MAML family adapts with one step of α = 0.4, second order), which are added to the
            mapping here, so ``TrainConfig(method=m, dataset=d)`` trains what ``advmeta tune m
            --dataset d`` trains and the checkpoint records every value that differs from the
            class defaults. A mapping becomes an :class:`~advmeta.hparams.HParams` at construction
            (its ``Config`` parsed there); an ``HParams`` of this learner that already holds those
            per-dataset values (a trial's) is kept as it is (parsed once).
        dataset: few-shot dataset name (``omniglot``, ``miniimagenet``, …).
        data_root: data folder (None: ``$ADVMETA_DATA`` or the cache).
        image_size: image side (None: the dataset's default).
        split_scheme: class split of the dataset (None: the standard one, Vinyals for Omniglot).
        backbone: registered model name (None: the learner's default; Conv4 for MAML-family).
        width: conv filters (None: 64 at ≤32 px and for metric learners, 32 at 84 px).
        bn_mode: ``batch`` (transductive batch statistics, MAML-family default) or ``running``.
        n_way, k_shot, q_query: the episode shape (queries per class).
        meta_batch: tasks per meta-update.
        iterations: meta-updates.
        meta_lr: Adam learning rate of the meta-update (ADML uses its own β₁, β₂).
        val_every: iterations between validations (0: only at the end).
        val_episodes: held-out validation episodes (the ``val`` split).
        checkpoint_every: iterations between checkpoints (the last iteration always writes one).
        seed: seed of the initialisation, the episode streams and the attacks.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        vectorize: ``loop``, ``vmap`` or ``auto`` (vmap on CUDA only, by the benchmark).
        threads: torch threads (None: ``OMP_NUM_THREADS`` or all CPUs).
        surrogate_arch: model of the fixed surrogate (ADML, MAML-AD, surrogate evaluation).
        surrogate_steps: Adam steps of the surrogate's training.
        surrogate_classes: ``all`` (the paper's threat: every class of the dataset, true labels)
            or ``train`` (meta-training classes only, predicted labels on unseen classes).
        cache_dir: where the surrogate checkpoints are cached (None: the per-user cache).
    """

    method: str = "maml"
    hparams: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = "omniglot"
    data_root: str | None = None
    image_size: int | None = None
    split_scheme: str | None = None
    backbone: str | None = None
    width: int | None = None
    bn_mode: str = "batch"
    n_way: int = 5
    k_shot: int = 1
    q_query: int = 15
    meta_batch: int = 4
    iterations: int = 600
    meta_lr: float = 1e-3
    val_every: int = 100
    val_episodes: int = 100
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"
    vectorize: str = "auto"
    threads: int | None = None
    surrogate_arch: str = DEFAULT_ARCH
    surrogate_steps: int = 1500
    surrogate_classes: str = "all"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        # Parsed here unless it already was (unknown method or fields: ConfigError).
        object.__setattr__(self, "hparams", learner_hparams(self.method, self.hparams, self.dataset))
        for name in ("n_way", "k_shot", "q_query", "meta_batch", "iterations", "val_episodes"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.bn_mode not in ("batch", "running"):
            raise ConfigError(f"bn_mode must be batch or running, got {self.bn_mode!r}")

    @property
    def learner_config(self) -> Any:
        """The learner's frozen ``Config`` (:attr:`hparams`' parsed ``Config``)."""
        return self.hparams.config  # type: ignore[attr-defined]  # an HParams since __post_init__

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["hparams"] = dict(self.hparams)
        return out

    def result_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the fields that do not change the result (:data:`RUN_ONLY_FIELDS`).

        Resume compares this, so the same run continued on another device, with another data
        path, cache or thread count (or the loop instead of vmap) is still the same run.
        """
        return {k: v for k, v in self.to_dict().items() if k not in RUN_ONLY_FIELDS}


def learner_hparams(method: str, hparams: Mapping[str, Any], dataset: str | None = None) -> HParams:
    """``hparams`` over learner ``method``'s defaults on ``dataset``, as its :class:`~advmeta.hparams.HParams`.

    The one place a learner's per-dataset defaults (``DATASET_DEFAULTS``) meet a run: the sweeps
    and ``advmeta tune`` set them on each trial (:meth:`HParams.on_dataset`, so a trial's id
    names them); a run described directly (``TrainConfig(method="tafl", dataset="omniglot")``)
    gets them here. Values in ``hparams`` win.

    Args:
        method: registered learner name.
        hparams: the values the run sets.
        dataset: the few-shot dataset (None: the class defaults alone).

    Returns:
        ``hparams`` itself when it is already this learner's ``HParams`` and sets every
        per-dataset value (no second parse), else a new one with them added.
    """
    from advmeta.learners import get_learner

    config_class = get_learner(method).Config
    on_dataset = dataset_defaults(config_class, dataset)
    if isinstance(hparams, HParams) and type(hparams.config) is config_class and set(on_dataset) <= set(hparams):
        return hparams
    return HParams.on_dataset(config_class, dataset, hparams, method)


# Where and how a run executes, not what it computes. ``vectorize``: the loop and vmap paths give
# the same numbers up to float rounding (tests/test_train.py), as CPU and CUDA do.
RUN_ONLY_FIELDS = frozenset({"device", "data_root", "cache_dir", "threads", "vectorize"})
