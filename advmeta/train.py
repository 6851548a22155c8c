"""Meta-training in plain PyTorch: Adam meta-updates, validation, checkpoints, exact resume.

Episode ``i`` of the training stream is episode ``i`` of the sampler (a pure function of
dataset, split, seed and index), and every iteration's attack randomness comes from a
generator seeded by (seed, iteration), so a run resumed from a checkpoint continues exactly
as the unbroken run would have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from advmeta import loop
from advmeta.env import configure_allocator, resolve_device, set_threads
from advmeta.factory import build_learner
from advmeta.learners import config_dict, get_learner
from advmeta.loop import Identity, Report
from advmeta.protocol import Bank
from advmeta.train_bank import check_training_bank, training_bank_request
from advmeta.stats import mean_ci95
from advmeta.train_config import RUN_ONLY_FIELDS, TrainConfig

__all__ = ["TrainConfig", "RUN_ONLY_FIELDS", "train", "training_bank_request", "check_training_bank", "validate",
           "load_dataset", "make_surrogate", "curve_every"]

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
    identity = Identity(cfg.to_dict(), cfg.result_dict(),
                        {"method": cfg.method, "hparams": config_dict(learner.cfg), "image_shape": tuple(ds.image_shape)})

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
    return path, {**metrics, "history": history, "hparams": config_dict(learner.cfg)}
