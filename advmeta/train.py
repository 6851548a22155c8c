"""Meta-training in plain PyTorch: the run's description (:class:`TrainConfig`), its learner built
(:func:`build_learner`), its training bank (ADML, MAML-AD) and the loop (:func:`train`: Adam
meta-updates, validation, checkpoints, exact resume).

Episode ``i`` of the training stream is episode ``i`` of the sampler (a pure function of
dataset, split, seed and index), and every iteration's attack randomness comes from a
generator seeded by (seed, iteration), so a run resumed from a checkpoint continues exactly
as the unbroken run would have.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advmeta import loop
from advmeta.env import configure_allocator, resolve_device, set_threads
from advmeta.errors import ConfigError
from advmeta.hparams import HParams, config_values, dataset_defaults
from advmeta.learners import Learner, get_learner
from advmeta.loop import Identity, Report
from advmeta.protocol import Bank
from advmeta.stats import mean_ci95
from advmeta.surrogate import DEFAULT_ARCH

__all__ = ["TrainConfig", "RUN_ONLY_FIELDS", "train", "build_learner", "training_bank_request", "check_training_bank",
           "validate", "load_dataset", "make_surrogate", "curve_every"]


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


def default_width(image_size: int, backbone: str) -> int:
    """Conv4 filters: 64 at 28×28 (Omniglot) and for metric learners, 32 at 84×84 (MAML, §2)."""
    if backbone == "conv4" and image_size > 32:
        return 32
    return 64


def use_vmap(vectorize: str, device: torch.device) -> bool:
    """Whether tasks run under ``vmap``: ``auto`` = on CUDA only (the loop is faster on CPU)."""
    if vectorize not in ("auto", "loop", "vmap"):
        raise ConfigError(f"vectorize must be auto, loop or vmap, got {vectorize!r}")
    return vectorize == "vmap" or (vectorize == "auto" and device.type == "cuda")


def build_learner(cfg: Any, image_shape: tuple[int, int, int], device: torch.device,
                  surrogate: Any = None, bank: Any = None) -> Learner:
    """The learner a :class:`~advmeta.train.TrainConfig` describes, its network on ``device``.

    The network is initialised from the global torch RNG (seed it first for reproducibility).
    On the vmap path Conv4 uses the hand-written batch norm: torch's functional batch norm gives
    wrong second-order gradients under vmap (docs/performance.md#batch-norm-under-vmap).
    """
    from advmeta.models import build_model

    cls = get_learner(cfg.method)
    lcfg = cfg.learner_config
    vec = use_vmap(cfg.vectorize, device) and cls.maml_family
    backbone = cfg.backbone or cls.default_backbone
    c, h, _ = image_shape
    kwargs: dict[str, Any] = {"in_channels": c, "image_size": h,
                              "width": cfg.width or default_width(h, backbone), "bn_mode": cfg.bn_mode,
                              "bn_impl": "manual" if vec else "torch", **cls.model_kwargs(lcfg)}
    if cls.maml_family:
        kwargs["n_classes"] = cfg.n_way
    net = cls.wrap_model(lcfg, build_model(backbone, **kwargs)).to(device)
    return cls(lcfg, net, vectorize=vec, surrogate=surrogate, bank=bank)


def training_bank_request(cfg: TrainConfig) -> dict[str, Any] | None:
    """The episode bank that can stand in for ``cfg``'s surrogate attack (ADML, MAML-AD), or None.

    Training episode ``i`` is episode ``i`` of the ``train`` split's sampler with the learner's
    training shape (ADML: 2K shots and 2Q queries, half of them attacked), so a bank of the
    first ``iterations × meta_batch`` episodes of that shape at ``train_eps`` serves the run.

    Returns:
        :class:`advmeta.bank.BankSpec` fields (``dataset``, ``split``, ``n_way``, ``k_shot``,
        ``q_query``, ``seed``, ``image_size``, ``eps``, ``n_episodes``, ``surrogate``) plus
        ``surrogate_arch`` and ``surrogate_steps``; None for learners without a surrogate.
    """
    from advmeta.bank import surrogate_key
    from advmeta.eps import format_eps

    cls = get_learner(cfg.method)
    if not cls.needs_surrogate:
        return None
    lcfg = cfg.learner_config
    k, q, u = cls(lcfg, torch.nn.Identity()).train_shots(cfg.k_shot, cfg.q_query, 0)
    if u:
        return None
    return {"dataset": cfg.dataset, "split": "train", "n_way": cfg.n_way, "k_shot": k, "q_query": q,
            "seed": cfg.seed, "image_size": cfg.image_size, "eps": [format_eps(lcfg.train_eps)],
            "n_episodes": cfg.iterations * cfg.meta_batch,
            "surrogate": surrogate_key(cfg.surrogate_arch, cfg.surrogate_steps, cfg.seed, cfg.image_size,
                                       cfg.surrogate_classes),
            "surrogate_arch": cfg.surrogate_arch, "surrogate_steps": cfg.surrogate_steps}


def check_training_bank(bank: Any, cfg: TrainConfig) -> None:
    """Raise :class:`ConfigError` when a bank's manifest (``bank.spec``, if any) cannot serve ``cfg``.

    Banks without a manifest (any ``Bank`` callable) are checked episode by episode instead.
    """
    want, spec = training_bank_request(cfg), getattr(bank, "spec", None)
    if want is None or spec is None:
        return
    bad = [f"{k}={getattr(spec, k)!r} (run: {want[k]!r})"
           for k in ("dataset", "split", "n_way", "k_shot", "q_query", "seed", "image_size", "surrogate")
           if getattr(spec, k) != want[k]]
    if want["eps"][0] not in spec.eps:
        bad.append(f"eps={list(spec.eps)} (run: {want['eps'][0]})")
    if spec.n_episodes < want["n_episodes"]:
        bad.append(f"n_episodes={spec.n_episodes} (run: {want['n_episodes']})")
    if bad:
        where = getattr(bank, "path", "the episode bank")
        raise ConfigError(f"{where} cannot serve this training run: {'; '.join(bad)}")

def load_dataset(cfg: TrainConfig) -> Any:
    """The few-shot dataset of a configuration."""
    from advmeta.data import load_fewshot

    return load_fewshot(cfg.dataset, data_root=cfg.data_root, image_size=cfg.image_size,
                        split_scheme=cfg.split_scheme)


def make_surrogate(cfg: TrainConfig, ds: Any, device: torch.device, progress: bool = False) -> Any:
    """The fixed surrogate of this dataset/image size/arch/seed (trained once, then cached)."""
    from advmeta.surrogate import SurrogateConfig, get_surrogate

    return get_surrogate(ds, SurrogateConfig(arch=cfg.surrogate_arch, steps=cfg.surrogate_steps, seed=cfg.seed,
                                             classes=cfg.surrogate_classes),
                         device=device, cache_dir=cfg.cache_dir, progress=progress)


def validate(learner: Any, sampler: Any, n_episodes: int, device: torch.device, chunk: int = 25) -> list[float]:
    """Clean query accuracy (%) of each validation episode after the test fine-tune steps."""
    learner.net.eval()
    accs: list[float] = []
    for start in range(0, n_episodes, chunk):
        ep = sampler.sample(list(range(start, min(n_episodes, start + chunk))), device=device)
        fn = learner.adapted(ep.support_x, ep.support_y, learner.test_steps)[-1]
        with torch.no_grad():
            pred = fn(ep.query_x).argmax(-1)
        accs += ((pred == ep.query_y).float().mean(1) * 100).tolist()
    return accs


def curve_every(iterations: int, val_every: int) -> int:
    """How often a run logs a learning-curve row (iterations): the largest divisor of ``val_every``
    at most a tenth of it, so every validation is a row (``val_every`` 0: a fiftieth of the run)."""
    if val_every <= 0:
        return max(1, iterations // 50)
    return max(d for d in range(1, max(1, val_every // 10) + 1) if val_every % d == 0)


def _iteration_generator(seed: int, it: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + it)


class _MetaTrainer:
    """Meta-training as a :class:`advmeta.loop.Trainer`: a unit is one meta-iteration.

    The loop asks for metrics every :func:`curve_every` iterations (a learning-curve row: the
    training loss and, where the learner measures it, the accuracy on its attacked queries, over
    the iterations since the last row); the validation episodes run every ``val_every`` and at
    the end, as they would without the finer rows (validation draws no random numbers).
    """

    kind = "meta"

    def __init__(self, cfg: TrainConfig, learner: Any, train_sampler: Any, val_sampler: Any,
                 device: torch.device) -> None:
        self.cfg, self.learner, self.device = cfg, learner, device
        self.train_sampler, self.val_sampler = train_sampler, val_sampler
        self.optimizers = learner.optimizers(cfg.meta_lr)

    def unit(self, i: int) -> dict[str, float]:
        self.learner.net.train()
        mb = self.cfg.meta_batch
        ep = self.train_sampler.sample(list(range(i * mb, (i + 1) * mb)), device=self.device)
        stats: dict[str, float] = self.learner.update(self.optimizers, ep, _iteration_generator(self.cfg.seed, i, self.device))
        return stats

    def validate(self, done: int, units: list[dict[str, float]]) -> dict[str, Any]:
        row: dict[str, Any] = {"iteration": done, "train_loss": float(np.mean([u["loss"] for u in units]))}
        adv = [u["acc_adv"] for u in units if "acc_adv" in u]
        if adv:
            row["train_adv_acc"] = float(np.mean(adv))
        every = self.cfg.val_every
        if done == self.cfg.iterations or (every > 0 and done % every == 0):
            row["val_acc"], row["val_acc_ci95"] = mean_ci95(
                validate(self.learner, self.val_sampler, self.cfg.val_episodes, self.device))
        return row

    def state(self) -> dict[str, Any]:
        return {"model": self.learner.net.state_dict(), "optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.learner.net.load_state_dict(state["model"])
        for opt, s in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(s)


def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = True, progress: bool = True,
          report: Report | None = None, bank: Bank | None = None) -> tuple[Path, dict[str, Any]]:
    """Meta-train ``cfg.method`` and write checkpoints to ``out_dir/checkpoint.pt``.

    The loop, the checkpoint format and the resume policy are :mod:`advmeta.loop`'s (shared
    with the L2L trainers); the network's weights are ``state["state"]["model"]``.

    Args:
        cfg: the run's configuration.
        out_dir: folder of the checkpoint.
        resume: continue from ``out_dir/checkpoint.pt`` when it exists (to the same result).
        progress: draw a progress bar on stderr.
        report: called as ``report(metrics, checkpoint_path_or_None)`` after every validation
            and checkpoint (the Ray layer forwards it to ``tune.report``).
        bank: pre-attacked training episodes (:data:`advmeta.protocol.Bank`, e.g. an
            :class:`advmeta.bank.EpisodeBank` made by ``advmeta episodes --split train`` with
            the shape of :func:`training_bank_request`): ADML and MAML-AD read their surrogate
            images from it instead of training the surrogate and attacking here (the same
            images, so the same result); other learners ignore it.

    Returns:
        The final checkpoint's path and the metrics (``val_acc``, ``val_acc_ci95``,
        ``train_loss``, ``train_seconds``, ``iteration``; ``history``: the learning curve, one
        row every :func:`curve_every` iterations, ``val_acc`` in those at a validation;
        ``hparams``: the learner's every hyper-parameter).

    Raises:
        NonFiniteLossError: a meta-training loss was NaN or infinite.
        ConfigError: the bank does not hold this run's training episodes, or ``out_dir`` holds
            the checkpoint of another configuration.
    """
    from advmeta.data import EpisodeSampler, EpisodeSpec

    configure_allocator()
    if cfg.threads is not None or cfg.device == "cpu":
        set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    ds = load_dataset(cfg)
    cls_needs = get_learner(cfg.method).needs_surrogate
    bank = bank if cls_needs else None
    if bank is not None:
        check_training_bank(bank, cfg)
    surrogate = make_surrogate(cfg, ds, device, progress) if cls_needs and bank is None else None
    torch.manual_seed(cfg.seed)
    learner = build_learner(cfg, ds.image_shape, device, surrogate=surrogate, bank=bank)
    k, q, u = learner.train_shots(cfg.k_shot, cfg.q_query, 0)
    train_sampler = EpisodeSampler(ds, "train", EpisodeSpec(n_way=cfg.n_way, k_shot=k, q_query=q, n_unlabeled=u),
                                   seed=cfg.seed)
    val_sampler = EpisodeSampler(ds, "val", EpisodeSpec(n_way=cfg.n_way, k_shot=cfg.k_shot, q_query=cfg.q_query),
                                 seed=cfg.seed)
    trainer = _MetaTrainer(cfg, learner, train_sampler, val_sampler, device)
    learner_hp = config_values(learner.cfg)
    identity = Identity(cfg.to_dict(), cfg.result_dict(),
                        {"method": cfg.method, "hparams": learner_hp, "image_shape": tuple(ds.image_shape)})

    last_val: list[float] = []

    def describe(stats: dict[str, float], metrics: dict[str, Any]) -> str:
        if "val_acc" in metrics:
            last_val[:] = [float(metrics["val_acc"])]
        return f"loss {stats['loss']:.3f}" + (f" val {last_val[0]:.1f}%" if last_val else "")

    path, metrics, history = loop.run(trainer, out_dir, identity,
                                      loop.Schedule(cfg.iterations, curve_every(cfg.iterations, cfg.val_every),
                                                    cfg.checkpoint_every),
                                      resume=resume, report=report, progress=progress, label=cfg.method,
                                      describe=describe, map_location=device)
    return path, {**metrics, "history": history, "hparams": learner_hp}
