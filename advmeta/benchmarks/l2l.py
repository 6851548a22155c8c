"""L2L training cost: seconds per minibatch of Plain, PGM (PGD-10), Grad L2L and 2-Step L2L.

``python -m advmeta.benchmarks.l2l [--setting paper|cpu] [--batch B] [--rounds R] [--device cpu|cuda]``
times one alternating step of each trainer in interleaved rounds on the same random minibatch
(timing does not depend on the pixels) and prints each trainer's time relative to PGM Net,
next to the paper's time per epoch on CIFAR-10 (Plain 106 s, PGM 1311 s, Grad 618 s, 2-Step
805 s: ratios 0.08 / 1 / 0.47 / 0.61).

Settings:
  paper  the paper's networks: a WRN-34-10 classifier on 3×32×32 and the wide attacker;
  cpu    the CPU budget of ``python -m advmeta.experiments.l2l``: WRN-10-2 on 3×16×16, with the
         slim and with the wide attacker.

The claim under test is the paper's: Grad L2L's epoch costs less than PGM Net's, because one
attacker pass replaces nine extra classifier passes. It holds when the classifier dominates
the cost (the paper's WRN-34-10); the cpu setting shows what happens when it does not.
"""

from __future__ import annotations

import argparse
from typing import Any, TypedDict

import torch

from advmeta.env import configure_allocator, resolve_device, set_threads
from advmeta.l2l.config import L2LConfig
from advmeta.l2l.timing import interleaved_step_seconds

PAPER_SECONDS_PER_EPOCH = {"plain": 106.0, "pgm": 1311.0, "grad-l2l": 618.0, "2step-l2l": 805.0}
"""Jiang et al. (AISTATS 2021), CIFAR-10, WRN-34-10, time per epoch."""



class _Setting(TypedDict):
    """A benchmark setting: the classifier WRN-``depth``-``widen`` on 3×``size``×``size`` and the attackers timed."""

    depth: int
    widen: int
    size: int
    attackers: tuple[str, ...]


class _Common(TypedDict):
    """The :class:`L2LConfig` fields every trainer of a setting shares."""

    classifier_kwargs: dict[str, Any]
    device: str


SETTINGS: dict[str, _Setting] = {
    "paper": {"depth": 34, "widen": 10, "size": 32, "attackers": ("wide",)},
    "cpu": {"depth": 10, "widen": 2, "size": 16, "attackers": ("slim", "wide")},
}


def configs(setting: str) -> list[L2LConfig]:
    """Plain, PGM and the two gradient-fed L2L trainers with each of the setting's attackers."""
    s = SETTINGS[setting]
    common: _Common = {"classifier_kwargs": {"depth": s["depth"], "widen": s["widen"]}, "device": "cpu"}
    out = [L2LConfig(method="plain", **common), L2LConfig(method="pgm", **common)]
    for method in ("grad-l2l", "2step-l2l"):
        out += [L2LConfig(method=method, attacker=a, **common) for a in s["attackers"]]
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Print the table; return {trainer: seconds per step}."""
    ap = argparse.ArgumentParser(prog="python -m advmeta.benchmarks.l2l", description=__doc__.split("\n")[0])
    ap.add_argument("--setting", choices=sorted(SETTINGS), default="paper")
    ap.add_argument("--batch", type=int, default=None, help="minibatch size (default: 8 on CPU, 128 on CUDA)")
    ap.add_argument("--rounds", type=int, default=3, help="timed interleaved rounds (after one warm-up round)")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    configure_allocator()
    set_threads(a.threads)
    device = resolve_device(a.device)
    batch = a.batch or (128 if device.type == "cuda" else 8)
    s = SETTINGS[a.setting]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, s["size"], s["size"], generator=g)
    y = torch.randint(0, a.classes, (batch,), generator=g)
    cfgs = configs(a.setting)
    print(f"{a.setting}: WRN-{s['depth']}-{s['widen']} on 3×{s['size']}×{s['size']}, batch {batch}, "
          f"{device}, {torch.get_num_threads()} threads, median of {a.rounds} interleaved rounds", flush=True)
    sec = interleaved_step_seconds(cfgs, x, y, a.classes, a.rounds, device)
    print(f"{'trainer':<18}{'s/batch':>10}{'/ PGM':>8}{'paper /PGM':>12}")
    for cfg in cfgs:
        paper = PAPER_SECONDS_PER_EPOCH[cfg.method] / PAPER_SECONDS_PER_EPOCH["pgm"]
        print(f"{cfg.name:<18}{sec[cfg.name]:>10.3f}{sec[cfg.name] / sec['pgm']:>8.2f}{paper:>12.2f}", flush=True)
    return sec


if __name__ == "__main__":
    main()
