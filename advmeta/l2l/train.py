"""Training an L2L-family classifier: epochs of alternating steps, schedules, checkpoints, timing.

``train_l2l`` runs on :mod:`advmeta.loop`, the skeleton :func:`advmeta.train.train` runs on:
``(cfg, out_dir, resume, progress, report)``, returning the checkpoint path and the final
metrics, and calling ``report(metrics, path)`` after every epoch (the Ray layer forwards it to
``tune.report``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advmeta import loop
from advmeta.env import resolve_device
from advmeta.eps import parse_eps
from advmeta.l2l.config import L2LConfig
from advmeta.l2l.data import L2LData, augment, load_l2l_data, minibatches, to_float
from advmeta.l2l.evaluate import accuracy
from advmeta.l2l.networks import build_attacker, build_classifier
from advmeta.l2l.step import alternating_step
from advmeta.loop import Report


def _optimisers(
    cfg: L2LConfig, classifier: nn.Module, attacker: nn.Module | None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.MultiStepLR, torch.optim.Optimizer | None]:
    opt_f = torch.optim.SGD(classifier.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt_f, milestones=cfg.milestone_epochs(), gamma=cfg.lr_gamma)
    opt_g = torch.optim.Adam(attacker.parameters(), lr=cfg.attacker_lr) if attacker is not None else None
    return opt_f, sched, opt_g


def _validate(cfg: L2LConfig, classifier: nn.Module, data: L2LData, device: torch.device) -> dict[str, float]:
    """Clean and PGD-20 (step 2/255) accuracy on the first ``eval_batches`` held-out batches."""
    if cfg.eval_batches == 0:
        return {}
    n = len(data.test_y) if cfg.eval_batches is None else min(len(data.test_y), cfg.eval_batches * cfg.batch_size)
    x, y = data.test_x[:n], data.test_y[:n]
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    clean, _ = accuracy(classifier, x, y, None, cfg.batch_size, device)
    robust, _ = accuracy(classifier, x, y, ("pgd", {"eps": cfg.eps_value, "steps": 20, "step_size": 2 / 255}),
                         cfg.batch_size, device, generator=gen)
    return {"val_clean_acc": 100 * clean.float().mean().item(), "val_pgd20_acc": 100 * robust.float().mean().item()}


class _L2LTrainer:
    """L2L training as a :class:`advmeta.loop.Trainer`: a unit is one epoch of alternating steps."""

    kind = "l2l"

    def __init__(self, cfg: L2LConfig, data: L2LData, device: torch.device) -> None:
        self.cfg, self.data, self.device = cfg, data, device
        torch.manual_seed(cfg.seed)
        self.classifier = build_classifier(cfg, data.image_shape, data.num_classes).to(device)
        attacker = build_attacker(cfg, data.image_shape)
        self.attacker = attacker.to(device) if attacker is not None else None
        self.opt_f, self.sched, self.opt_g = _optimisers(cfg, self.classifier, self.attacker)
        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.attack_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)

    def unit(self, i: int) -> dict[str, float]:
        cfg, device = self.cfg, self.device
        t0 = time.perf_counter()
        n = correct = 0
        loss_sum = att_sum = 0.0
        self.classifier.train()
        step_size = parse_eps(cfg.pgd_step_size)
        for xb, yb in minibatches(self.data.train_x, self.data.train_y, cfg.batch_size, self.data_gen, drop_last=True):
            x, y = to_float(xb, device), yb.to(device)
            if cfg.augment:
                x = augment(x, self.data_gen, flip=cfg.flips)
            res = alternating_step(cfg.method_enum, self.classifier, self.attacker, self.opt_f, self.opt_g, x, y,
                                   cfg.eps_value, pgd_steps=cfg.pgd_steps, pgd_step_size=step_size,
                                   eval_mode_perturb=cfg.perturb_eval_mode, generator=self.attack_gen)
            n += len(y)
            correct += res.correct
            loss_sum += res.classifier_loss * len(y)
            att_sum += res.attacker_loss * len(y)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        lr = self.opt_f.param_groups[0]["lr"]
        self.sched.step()
        return {"lr": lr, "loss": loss_sum / max(n, 1), "train_adv_acc": 100 * correct / max(n, 1),
                "attacker_loss": att_sum / max(n, 1), "epoch_seconds": seconds}

    def validate(self, done: int, units: list[dict[str, float]]) -> dict[str, Any]:
        last = units[-1]
        return {"epoch": done, "lr": last["lr"], "train_loss": last["loss"], "train_adv_acc": last["train_adv_acc"],
                "attacker_loss": last["attacker_loss"], "epoch_seconds": last["epoch_seconds"],
                **_validate(self.cfg, self.classifier, self.data, self.device)}

    def state(self) -> dict[str, Any]:
        return {"classifier": self.classifier.state_dict(), "classifier_opt": self.opt_f.state_dict(),
                "scheduler": self.sched.state_dict(),
                "attacker": self.attacker.state_dict() if self.attacker is not None else None,
                "attacker_opt": self.opt_g.state_dict() if self.opt_g is not None else None,
                "data_gen": self.data_gen.get_state(), "attack_gen": self.attack_gen.get_state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.classifier.load_state_dict(state["classifier"])
        if self.attacker is not None and self.opt_g is not None:
            self.attacker.load_state_dict(state["attacker"])
            self.opt_g.load_state_dict(state["attacker_opt"])
        self.opt_f.load_state_dict(state["classifier_opt"])
        self.sched.load_state_dict(state["scheduler"])
        self.data_gen.set_state(state["data_gen"])
        self.attack_gen.set_state(state["attack_gen"].to(self.attack_gen.get_state().device))


def train_l2l(
    cfg: L2LConfig,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    report: Report | None = None,
    *,
    data: L2LData | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train ``cfg``'s classifier (and attacker) and write ``out_dir/checkpoint.pt``.

    The loop, the checkpoint format and the resume policy are :mod:`advmeta.loop`'s (shared
    with the meta-learners): an epoch is a unit, validated (and reported) every epoch.

    Args:
        cfg: the run.
        out_dir: folder of the checkpoint (created).
        resume: continue from an existing checkpoint of the same configuration.
        progress: draw a progress bar on stderr.
        report: called as ``report(metrics, checkpoint_path_or_None)`` after every epoch.
        data: the classification data, if already loaded (else loaded from ``cfg``).

    Returns:
        The checkpoint's path and the last epoch's metrics (``epoch_seconds`` is the mean
        training time per epoch and ``train_seconds`` the total, validation excluded;
        ``history``: every epoch's metrics, the learning curve).

    Raises:
        NonFiniteLossError: a loss became NaN or infinite.
        DataNotFoundError: the dataset's files are missing.
        ConfigError: ``out_dir`` holds the checkpoint of another configuration.
    """
    device = resolve_device(cfg.device)
    if data is None:
        data = load_l2l_data(cfg.dataset, cfg.data_root, cfg.image_size, cfg.num_classes,
                             cfg.train_per_class, cfg.test_per_class)
    trainer = _L2LTrainer(cfg, data, device)
    identity = loop.Identity(cfg.to_dict(), cfg.result_dict(),
                             {"dataset": data.name, "image_shape": list(data.image_shape),
                              "num_classes": data.num_classes})

    def describe(stats: dict[str, float], metrics: dict[str, Any]) -> str:
        val = "".join(f" {k}={v:.1f}" for k, v in metrics.items() if k.startswith("val_"))
        return f"loss={stats['loss']:.3f} adv_acc={stats['train_adv_acc']:.1f}{val}"

    path, metrics, history = loop.run(trainer, out_dir, identity, loop.Schedule(cfg.epochs, 1, cfg.checkpoint_every),
                                      resume=resume, report=report, progress=progress, label=cfg.name,
                                      describe=describe, map_location=device)
    return path, {**metrics, "epoch_seconds": metrics["train_seconds"] / max(int(metrics["epoch"]), 1),
                  "history": history}
