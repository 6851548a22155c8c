"""Training an L2L-family classifier: epochs of alternating steps, schedules, checkpoints, timing.

``train_l2l`` mirrors :func:`advmeta.train.train`: ``(cfg, out_dir, resume, progress, report)``,
returning the checkpoint path and the final metrics, and calling ``report(metrics, path)`` after
every epoch (the Ray layer forwards it to ``tune.report``).
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advmeta.env import resolve_device
from advmeta.eps import parse_eps
from advmeta.l2l.config import L2LConfig
from advmeta.l2l.data import ClassificationData, augment, load_l2l_data, minibatches, to_float
from advmeta.l2l.evaluate import accuracy
from advmeta.l2l.networks import CHECKPOINT_NAME, build_attacker, build_classifier, load_checkpoint, save_checkpoint
from advmeta.l2l.step import alternating_step

Report = Callable[[dict[str, Any], Path | None], None]


def _optimisers(
    cfg: L2LConfig, classifier: nn.Module, attacker: nn.Module | None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.MultiStepLR, torch.optim.Optimizer | None]:
    opt_f = torch.optim.SGD(classifier.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt_f, milestones=cfg.milestone_epochs(), gamma=cfg.lr_gamma)
    opt_g = torch.optim.Adam(attacker.parameters(), lr=cfg.attacker_lr) if attacker is not None else None
    return opt_f, sched, opt_g


def _validate(cfg: L2LConfig, classifier: nn.Module, data: ClassificationData, device: torch.device) -> dict[str, float]:
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


def train_l2l(
    cfg: L2LConfig,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    report: Report | None = None,
    *,
    data: ClassificationData | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train ``cfg``'s classifier (and attacker) and write ``out_dir/checkpoint.pt``.

    Args:
        cfg: the run.
        out_dir: folder of the checkpoint (created).
        resume: continue from an existing checkpoint of the same configuration.
        progress: print one line per epoch on stderr.
        report: called as ``report(metrics, checkpoint_path_or_None)`` after every epoch.
        data: the classification data, if already loaded (else loaded from ``cfg``).

    Returns:
        The checkpoint's path and the last epoch's metrics (``epoch_seconds`` is the mean
        training time per epoch, excluding validation; ``train_seconds`` the total).

    Raises:
        NonFiniteLossError: a loss became NaN or infinite.
        DataNotFoundError: the dataset's files are missing.
    """
    out = Path(out_dir)
    path = out / CHECKPOINT_NAME
    device = resolve_device(cfg.device)
    if data is None:
        data = load_l2l_data(cfg.dataset, cfg.data_root, cfg.image_size, cfg.num_classes,
                             cfg.train_per_class, cfg.test_per_class)
    torch.manual_seed(cfg.seed)
    classifier = build_classifier(cfg, data.image_shape, data.num_classes).to(device)
    attacker = build_attacker(cfg, data.image_shape)
    attacker = attacker.to(device) if attacker is not None else None
    opt_f, sched, opt_g = _optimisers(cfg, classifier, attacker)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    attack_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    start, history, train_seconds = 0, [], 0.0

    if resume and path.is_file():
        ck = load_checkpoint(path, device)
        if ck.cfg.result_dict() != cfg.result_dict():
            warnings.warn(f"{path} holds another configuration; training from scratch and replacing it", stacklevel=2)
        else:
            raw = ck.raw
            classifier.load_state_dict(raw["classifier"])
            if attacker is not None:
                attacker.load_state_dict(raw["attacker"])
                opt_g.load_state_dict(raw["attacker_opt"])
            opt_f.load_state_dict(raw["classifier_opt"])
            sched.load_state_dict(raw["scheduler"])
            data_gen.set_state(raw["data_gen"])
            attack_gen.set_state(raw["attack_gen"].to(attack_gen.get_state().device))
            start, history, train_seconds = ck.epoch, ck.history, ck.train_seconds

    eps = cfg.eps_value
    step_size = parse_eps(cfg.pgd_step_size)
    metrics: dict[str, Any] = history[-1] if history else {}
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        n = correct = 0
        loss_sum = att_sum = 0.0
        classifier.train()
        for xb, yb in minibatches(data.train_x, data.train_y, cfg.batch_size, data_gen, drop_last=True):
            x, y = to_float(xb, device), yb.to(device)
            if cfg.augment:
                x = augment(x, data_gen, flip=cfg.flips)
            res = alternating_step(cfg.method_enum, classifier, attacker, opt_f, opt_g, x, y, eps,
                                   pgd_steps=cfg.pgd_steps, pgd_step_size=step_size,
                                   eval_mode_perturb=cfg.perturb_eval_mode, generator=attack_gen)
            n += len(y)
            correct += res.correct
            loss_sum += res.classifier_loss * len(y)
            att_sum += res.attacker_loss * len(y)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        lr = opt_f.param_groups[0]["lr"]
        sched.step()
        metrics = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / max(n, 1),
                   "train_adv_acc": 100 * correct / max(n, 1), "attacker_loss": att_sum / max(n, 1),
                   "epoch_seconds": seconds, "train_seconds": train_seconds}
        metrics.update(_validate(cfg, classifier, data, device))
        history.append(metrics)
        saved: Path | None = None
        if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
            saved = save_checkpoint(path, {
                "config": cfg.to_dict(), "epoch": epoch + 1, "dataset": data.name,
                "image_shape": list(data.image_shape), "num_classes": data.num_classes,
                "classifier": classifier.state_dict(), "classifier_opt": opt_f.state_dict(),
                "scheduler": sched.state_dict(),
                "attacker": attacker.state_dict() if attacker is not None else None,
                "attacker_opt": opt_g.state_dict() if opt_g is not None else None,
                "data_gen": data_gen.get_state(), "attack_gen": attack_gen.get_state(),
                "history": history, "train_seconds": train_seconds,
            })
        if progress:
            val = "".join(f" {k}={v:.1f}" for k, v in metrics.items() if k.startswith("val_"))
            print(f"[{cfg.name}] epoch {epoch + 1}/{cfg.epochs} loss={metrics['train_loss']:.3f} "
                  f"adv_acc={metrics['train_adv_acc']:.1f}{val} ({seconds:.1f}s)", file=sys.stderr)
        if report is not None:
            report(dict(metrics), saved)
    if not path.is_file():  # nothing left to train, yet no checkpoint: cannot happen unless resumed oddly
        raise RuntimeError(f"training finished without a checkpoint at {path}")
    final = dict(metrics)
    final["epoch_seconds"] = train_seconds / max(len(history), 1)
    return path, final
