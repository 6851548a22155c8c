"""Meta-training in plain PyTorch: Adam meta-updates, validation, checkpoints, exact resume.

Episode ``i`` of the training stream is episode ``i`` of the sampler (a pure function of
dataset, split, seed and index), and every iteration's attack randomness comes from a
generator seeded by (seed, iteration), so a run resumed from a checkpoint continues exactly
as the unbroken run would have.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advmeta import checkpoint as ckpt_io
from advmeta.env import configure_allocator, resolve_device, set_threads
from advmeta.errors import ConfigError
from advmeta.factory import build_learner
from advmeta.learners import config_dict, get_learner
from advmeta.protocol import Bank
from advmeta.train_bank import check_training_bank, training_bank_request
from advmeta.results import mean_ci95
from advmeta.train_config import RUN_ONLY_FIELDS, TrainConfig

__all__ = ["TrainConfig", "RUN_ONLY_FIELDS", "train", "training_bank_request", "check_training_bank", "validate",
           "load_dataset", "make_surrogate"]

Report = Callable[[dict[str, Any], "Path | None"], None]




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


def _iteration_generator(seed: int, it: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + it)


class _Progress:
    """A one-line progress bar on stderr (no dependency)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled, self.t0 = total, label, enabled, time.perf_counter()

    def update(self, i: int, start: int, text: str) -> None:
        if not self.enabled:
            return
        rate = (i - start) / max(time.perf_counter() - self.t0, 1e-9)
        width = 24
        done = int(width * i / self.total)
        sys.stderr.write(f"\r{self.label} [{'#' * done}{'.' * (width - done)}] {i}/{self.total} "
                         f"{rate:.2f} it/s {text}   ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = True, progress: bool = True,
          report: Report | None = None, bank: Bank | None = None) -> tuple[Path, dict[str, Any]]:
    """Meta-train ``cfg.method`` and write checkpoints to ``out_dir/checkpoint.pt``.

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
        ``train_loss``, ``train_seconds``, ``iteration``, ``history``).

    Raises:
        NonFiniteLossError: a meta-training loss was NaN or infinite.
        ConfigError: the bank does not hold this run's training episodes.
    """
    from advmeta.data import EpisodeSampler, EpisodeSpec

    configure_allocator()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "checkpoint.pt"
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
    optimizers = learner.optimizers(cfg.meta_lr)
    k, q, u = learner.train_shots(cfg.k_shot, cfg.q_query, 0)
    train_sampler = EpisodeSampler(ds, "train", EpisodeSpec(n_way=cfg.n_way, k_shot=k, q_query=q, n_unlabeled=u),
                                   seed=cfg.seed)
    val_sampler = EpisodeSampler(ds, "val", EpisodeSpec(n_way=cfg.n_way, k_shot=cfg.k_shot, q_query=cfg.q_query),
                                 seed=cfg.seed)
    start, history, train_seconds = 0, [], 0.0
    metrics: dict[str, Any] = {}
    if resume and path.exists():
        state = ckpt_io.load(path, map_location=device)
        saved_cfg = {k: v for k, v in state["train_config"].items() if k not in RUN_ONLY_FIELDS}
        if saved_cfg != cfg.result_dict():
            raise ConfigError(f"{path} was written by a different configuration; use another out_dir or resume=False")
        learner.net.load_state_dict(state["model"])
        for opt, s in zip(optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        ckpt_io.set_rng_state(state["rng"])
        start, history, train_seconds = state["iteration"], state["history"], state["train_seconds"]
        metrics = state["metrics"]
    bar = _Progress(cfg.iterations, cfg.method, progress)
    losses: list[float] = []
    t0 = time.perf_counter()
    for it in range(start, cfg.iterations):
        learner.net.train()
        ep = train_sampler.sample(list(range(it * cfg.meta_batch, (it + 1) * cfg.meta_batch)), device=device)
        stats = learner.update(optimizers, ep, _iteration_generator(cfg.seed, it, device))
        losses.append(stats["loss"])
        done = it + 1
        validate_now = done == cfg.iterations or (cfg.val_every > 0 and done % cfg.val_every == 0)
        save_now = done == cfg.iterations or (cfg.checkpoint_every > 0 and done % cfg.checkpoint_every == 0)
        if validate_now:
            accs = validate(learner, val_sampler, cfg.val_episodes, device)
            acc, ci = mean_ci95(accs)
            metrics = {"iteration": done, "train_loss": float(np.mean(losses[-max(1, cfg.val_every):])),
                       "val_acc": acc, "val_acc_ci95": ci}
            history.append(dict(metrics))
        if save_now or validate_now:
            elapsed = train_seconds + time.perf_counter() - t0
            metrics = {**metrics, "train_seconds": elapsed}
            saved = None
            if save_now:
                saved = ckpt_io.save_atomic({
                    "format": ckpt_io.FORMAT, "train_config": cfg.to_dict(), "method": cfg.method,
                    "hparams": config_dict(learner.cfg), "image_shape": tuple(ds.image_shape),
                    "model": learner.net.state_dict(), "optimizers": [o.state_dict() for o in optimizers],
                    "iteration": done, "rng": ckpt_io.rng_state(), "history": history,
                    "train_seconds": elapsed, "metrics": metrics}, path)
            if report is not None:
                report(dict(metrics), saved)
        bar.update(done, start, f"loss {stats['loss']:.3f}" + (f" val {metrics['val_acc']:.1f}%"
                                                                 if "val_acc" in metrics else ""))
    bar.close()
    if start >= cfg.iterations and not metrics:
        metrics = {"iteration": start}
    return path, {**metrics, "history": history}
