"""A fake method family for the runner's tests: fast, deterministic, crash-able (registered as ``toy``
through ``ADVMETA_FAMILIES=toy=tests.toy_family``, see tests/conftest.py).

It mimics the core's contract — train with checkpoints and resume, report metrics at each
validation, then evaluate into rows of the result schema — in milliseconds, so the Ray layer's
behaviour (retries, resume after SIGKILL, error records, determinism) is tested on its own.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advmeta.eps import Eps, format_eps, parse_eps
from advmeta.results import hparam_columns, mean_ci95

CKPT = "toy.ckpt.json"


@dataclass(frozen=True)
class ToyConfig:
    """Hyper-parameters of the toy learner (shaped like TAFL's, plus fault injection).

    Attributes:
        gamma: a fake focusing exponent; accuracy peaks at gamma = 2.
        k: a fake scale; matters little.
        train_eps: ε of the fake adversarial training, k/255.
        seconds: seconds each iteration sleeps (simulates work).
        crash_at: raise at this iteration (-1: never).
        crash_times: how many attempts crash before one gets through (counted in the work dir).
        gate: a file path; when set, every iteration after the first waits until it exists (a
            test holds trials mid-run without racing a clock).
    """

    gamma: float = 2.0
    k: float = 1.0
    train_eps: Eps = "2/255"
    seconds: float = 0.0
    crash_at: int = -1
    crash_times: int = 1
    gate: str = ""


def methods() -> list[str]:
    """The toy family's one method."""
    return ["toy"]


def config_class(method: str) -> type:
    """:class:`ToyConfig`."""
    return ToyConfig


def uses_dataset(method: str) -> bool:
    """Yes: the toy trials stand in for few-shot ones (a dataset is chosen for them)."""
    return True


def scenarios() -> tuple[str, ...]:
    """None of its own: the toy family (its trials use the meta family's white-box scenario)."""
    return ()


def trains_on_surrogate(method: str) -> bool:
    """No: the toy method never trains on a surrogate's images."""
    return False


def bank_requirements(spec: Any) -> list[dict[str, Any]]:
    """None: toy trials read no episode bank."""
    return []


def train_settings(budget: Any, method: str, axes: Mapping[str, Any]) -> dict[str, Any]:
    """The meta family's settings shape (a few-shot trial), not adversarially trained."""
    from advmeta.families.meta import episodic_settings

    return episodic_settings(budget, method, axes, adversarial=False)


def budget_hparams(budget: Any) -> dict[str, Any]:
    """None."""
    return {}


def search_evals(budget: Any, attacks: list[str], test_eps: list[str] | None, sweep: str) -> tuple[dict[str, Any], ...]:
    """One white-box evaluation at ``test_eps`` (default 2/255)."""
    return ({"scenario": "whitebox", "attacks": list(attacks), "eps": list(test_eps or ["2/255"])},)


def train_cost(spec: Any) -> float:
    """Its iterations' sleeps."""
    return float(spec.train.get("iterations", 6)) * float(spec.hparams.get("seconds", 0.0))


class ToyCrash(RuntimeError):
    """The injected failure."""


def _curve(cfg: ToyConfig, seed: int, it: int) -> float:
    rng = np.random.default_rng([seed, it, int(cfg.gamma * 1000), int(cfg.k * 1000)])
    base = 60.0 - 4.0 * (cfg.gamma - 2.0) ** 2 + 2.0 * math.log10(max(cfg.k, 1e-3))
    return float(base * (1 - math.exp(-(it + 1) / 5.0)) + rng.normal(0, 0.5))


def run(spec: Any, ctx: Any, report: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Train (resuming from ``ctx.work_dir``), report, evaluate; see :mod:`advmeta.families`."""
    # the spec the grid made reaches the trial whole: its parsed Config, and the resources the runner resolved
    assert isinstance(spec.config, ToyConfig) and spec.resources is not None and spec.resources.cpus_per_trial > 0
    cfg = spec.config
    train = dict(spec.train)
    seed = int(train.get("seed", 0))
    iterations = int(train.get("iterations", 6))
    every = max(1, int(train.get("checkpoint_every", 3)))
    work = Path(ctx.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    starts = work / "starts"  # how many times this trial began (a retry after a lost node adds one)
    starts.write_text(str(int(starts.read_text()) + 1 if starts.is_file() else 1))
    ckpt = work / CKPT
    start, elapsed = 0, 0.0
    if ckpt.is_file():
        state = json.loads(ckpt.read_text())
        start, elapsed = int(state["iteration"]), float(state["train_seconds"])
    t0 = time.perf_counter()
    val = _curve(cfg, seed, start)
    for it in range(start, iterations):
        if it == cfg.crash_at:
            crashes = work / "crashes"
            n = int(crashes.read_text()) if crashes.is_file() else 0
            if n < cfg.crash_times:
                crashes.write_text(str(n + 1))
                raise ToyCrash(f"injected crash at iteration {it} (attempt {n + 1})")
        if cfg.seconds:
            time.sleep(cfg.seconds)
        while cfg.gate and it > 0 and not os.path.exists(cfg.gate):
            time.sleep(0.05)
        val = _curve(cfg, seed, it)
        if (it + 1) % every == 0 or it + 1 == iterations:
            seconds = elapsed + time.perf_counter() - t0
            tmp = work / (CKPT + ".tmp")
            tmp.write_text(json.dumps({"iteration": it + 1, "train_seconds": seconds}))
            os.replace(tmp, ckpt)
            report({"iteration": it + 1, "val_acc": val, "train_seconds": seconds}, ckpt)
    train_seconds = elapsed + time.perf_counter() - t0
    rows, episode_rows = _evaluate(spec, cfg, seed, val, train_seconds)
    return rows, episode_rows, {"val_acc": val, "train_seconds": train_seconds}


def _evaluate(spec: Any, cfg: ToyConfig, seed: int, val: float,
              train_seconds: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    train = dict(spec.train)
    rows: list[dict[str, Any]] = []
    episode_rows: list[dict[str, Any]] = []
    common = {
        "method": spec.method, "dataset": train.get("dataset", "toy"), "split": "test",
        "image_size": train.get("image_size"), "n_way": train.get("n_way", 5), "k_shot": train.get("k_shot", 1),
        "q_query": train.get("q_query", 15), "seed": seed, "bn_mode": "batch", "first_order": None,
        "train_iterations": train.get("iterations", 6), "train_eps": parse_eps(cfg.train_eps),
        "train_eps_str": format_eps(cfg.train_eps), "train_seconds": train_seconds, **hparam_columns(asdict(cfg)),
    }
    for ev in spec.evals or ({"scenario": "whitebox", "attacks": ["pgd"], "eps": [cfg.train_eps]},):
        n = int(ev.get("episodes", 4))
        for attack in ev.get("attacks", ["pgd"]):
            for eps in ev.get("eps", ["2/255"]):
                for support in ev.get("support", ["clean"]):
                    for query in ev.get("query", ["adv"]):
                        clean = attack == "none" or (support == "clean" and query == "clean")
                        if clean and eps != ev.get("eps", ["2/255"])[0]:
                            continue  # one clean row per protocol, as the core's evaluation
                        eps_v = 0.0 if clean else parse_eps(eps)
                        rng = np.random.default_rng([seed, n, int(eps_v * 1e6), len(attack), len(support), len(query)])
                        accs = np.clip(val - 600 * eps_v + rng.normal(0, 5, n), 0, 100)
                        acc, ci = mean_ci95(accs)
                        scen = {"scenario": ev.get("scenario", "whitebox"), "support": support, "query": query,
                                "attack": "none" if clean else attack, "eps": eps_v, "eps_str": format_eps(eps_v),
                                "finetune_step": int(ev.get("finetune_step", 10))}
                        rows.append({**common, **scen, "attack_params": json.dumps({"steps": ev.get("attack_steps", 2)}),
                                     "n_episodes": n, "acc": acc, "acc_ci95": ci, "loss": float(3 - acc / 50),
                                     "eval_seconds": 0.0})
                        for i, a in enumerate(accs):
                            episode_rows.append({k: common[k] for k in ("method", "dataset", "split", "seed")}
                                                | {k: scen[k] for k in ("scenario", "support", "query", "attack", "eps_str", "finetune_step")}
                                                | {"episode_index": i, "acc": float(a), "loss": float(3 - a / 50),
                                                   "l_ar": float(abs(rng.normal(0.5, 0.2)))})
    return rows, episode_rows
