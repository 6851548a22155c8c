"""Seconds per training minibatch of several L2L trainers, timed in interleaved rounds.

On a shared machine the load drifts over a run, so per-epoch times measured minutes apart are
not comparable; timing one alternating step of each trainer in turn, on the same minibatch,
exposes every trainer to the same load. Used by ``python -m advmeta.experiments.l2l`` and
``python -m advmeta.benchmarks.l2l``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor

from advmeta.eps import parse_eps
from advmeta.l2l.config import L2LConfig
from advmeta.l2l.networks import build_attacker, build_classifier
from advmeta.l2l.step import alternating_step
from advmeta.l2l.train import _optimisers


def interleaved_step_seconds(
    cfgs: Sequence[L2LConfig], x: Tensor, y: Tensor, num_classes: int, rounds: int, device: torch.device | str,
) -> dict[str, float]:
    """Median seconds of one alternating step (perturb, classifier update, attacker update) per config.

    Round 0 warms up (allocations, lazy initialisation) and is not counted.

    Args:
        cfgs: the trainers, told apart by :attr:`L2LConfig.name` (names must differ).
        x: one minibatch, float in [0, 1], (B, C, H, W).
        y: its labels in [0, num_classes), (B,).
        num_classes: classifier outputs.
        rounds: timed rounds (≥ 1).
        device: where the networks and the batch live.

    Returns:
        {trainer name: median seconds per step}.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    names = [c.name for c in cfgs]
    if len(set(names)) != len(names):
        raise ValueError(f"trainer names must differ, got {names}")
    device = torch.device(device)
    x, y = x.to(device), y.to(device)
    shape = cast("tuple[int, int, int]", tuple(int(s) for s in x.shape[1:]))  # x is (B, C, H, W)
    nets = {}
    for cfg in cfgs:
        torch.manual_seed(cfg.seed)
        f = build_classifier(cfg, shape, num_classes).to(device)
        g = build_attacker(cfg, shape)
        g = g.to(device) if g is not None else None
        opt_f, _, opt_g = _optimisers(cfg, f, g)
        nets[cfg.name] = (cfg, f, g, opt_f, opt_g)
    times: dict[str, list[float]] = {n: [] for n in nets}
    for r in range(rounds + 1):
        for name, (cfg, f, g, opt_f, opt_g) in nets.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            alternating_step(cfg.method_enum, f, g, opt_f, opt_g, x, y, cfg.eps_value, pgd_steps=cfg.pgd_steps,
                             pgd_step_size=parse_eps(cfg.pgd_step_size), eval_mode_perturb=cfg.perturb_eval_mode,
                             generator=torch.Generator(device=device).manual_seed(r))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if r:
                times[name].append(time.perf_counter() - t0)
    return {n: statistics.median(t) for n, t in times.items()}
