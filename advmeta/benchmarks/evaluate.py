"""Benchmark of the evaluation: adapt once per support and attack many episodes at once, against
re-adapting for every cell of the table and evaluating one episode at a time.

Run: ``python -m advmeta.benchmarks.evaluate [--episodes 20] [--dataset omniglot]``.

One MAML checkpoint (trained here for ``--iterations``), one evaluation table: the clean
fine-tune curve and white-box attacks × ε on the query, as a sweep's trial evaluates it.

- ``once``: one :func:`advmeta.evaluate.evaluate` call — each chunk of episodes is sampled and
  fine-tuned once, and the adapted weights serve every attack and ε (the runner's path).
- ``per cell``: the same table cell by cell — for each (attack, ε), and for the clean curve,
  every episode is sampled, fine-tuned, attacked and scored on its own (how the evaluation ran
  before); the checkpoint and the dataset are loaded once, outside the timing, for both.

Both must give the same per-episode accuracies (printed: the largest difference, in points);
the ratio of their times is the speed-up. Rounds alternate so machine load hits both alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from collections import defaultdict
from typing import Any


def _per_episode(episode_rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], float]:
    return {(r["scenario"], r["attack"], r["eps_str"], r["finetune_step"], r["episode_index"]): float(r["acc"])
            for r in episode_rows}


def _per_cell(learner: Any, cfg: Any, ds: Any, protocol: Any) -> dict[tuple[Any, ...], float]:
    """The table one cell and one episode at a time, re-adapting each time; same keys as
    :func:`_per_episode` (the same generators per episode and attack, so the same numbers)."""
    import torch

    from advmeta.attacks import AttackSpec
    from advmeta.data import EpisodeSampler, EpisodeSpec
    from advmeta.eps import format_eps
    from advmeta.evaluate import _generators, query_scores

    sampler = EpisodeSampler(ds, protocol.split, EpisodeSpec(cfg.n_way, cfg.k_shot, cfg.q_query), seed=cfg.seed)
    steps = learner.test_steps if learner.maml_family else 0
    out: dict[tuple[Any, ...], float] = {}
    for i in range(protocol.n_episodes):  # the clean fine-tune curve
        ep = sampler.sample([i])
        for step, fn in enumerate(learner.adapted(ep.support_x, ep.support_y, steps)):
            with torch.no_grad():
                ok, _ = query_scores(fn(ep.query_x), ep.query_y)
            out[("finetune", "none", "0/255", step, i)] = float(ok.float().mean() * 100)
    for attack in protocol.attacks:
        for eps in protocol.eps:
            spec, es = AttackSpec(attack, eps, protocol.params_of(attack)), format_eps(eps)
            for i in range(protocol.n_episodes):
                ep = sampler.sample([i])
                fn = learner.adapted(ep.support_x, ep.support_y, steps)[-1]
                x_adv = spec(fn, ep.query_x, ep.query_y, _generators(cfg.seed, ep.index, f"{attack}|{es}", ep.query_x.device))
                with torch.no_grad():
                    ok, _ = query_scores(fn(x_adv), ep.query_y)
                out[("whitebox", attack, es, steps, i)] = float(ok.float().mean() * 100)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=None, help="default: omniglot when found, else glyphs")
    p.add_argument("--data-root", default=None)
    p.add_argument("--iterations", type=int, default=100, help="MAML meta-training iterations before timing")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--attacks", default="pgd,fgsm,mifgsm,apgd-ce")
    p.add_argument("--eps", default="8/255,16/255,32/255")
    p.add_argument("--steps", type=int, default=10, help="iterations of the iterative attacks")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads (a trial's one CPU)")
    args = p.parse_args()

    import torch

    from advmeta.data.catalog import find
    from advmeta.evaluate import evaluate, load_learner
    from advmeta.protocol import EvalProtocol
    from advmeta.train import TrainConfig, train

    torch.set_num_threads(args.threads)
    dataset = args.dataset or ("omniglot" if find("omniglot", args.data_root) is not None else "glyphs")
    attacks = tuple(a.strip() for a in args.attacks.split(","))
    eps = tuple(e.strip() for e in args.eps.split(","))
    with tempfile.TemporaryDirectory(prefix="advmeta-eval-bench-") as tmp:
        cfg = TrainConfig(method="maml", dataset=dataset, data_root=args.data_root, iterations=args.iterations,
                          hparams={"inner_steps": 1, "test_inner_steps": 3, "inner_lr": 0.4, "first_order": False},
                          image_size=28, q_query=15, val_every=0, val_episodes=1, device="cpu",
                          threads=args.threads, cache_dir=os.path.join(tmp, "cache"))
        ckpt, _ = train(cfg, os.path.join(tmp, "run"), progress=False)
        params = {a: {"steps": args.steps} for a in attacks if a != "fgsm"}
        protocol = EvalProtocol(attacks=attacks, eps=eps, chunk=min(50, args.episodes), n_episodes=args.episodes,
                                scenarios=("finetune", "whitebox"), attack_params=params, checks=None, device="cpu",
                                worst=False)
        learner, cfg, _, ds = load_learner(ckpt, torch.device("cpu"))
        evaluate(ckpt, dataclasses.replace(protocol, n_episodes=1, chunk=1), progress=False)  # warm caches
        times: dict[str, float] = defaultdict(float)
        results: dict[str, dict[tuple[Any, ...], float]] = {}
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            _, once, _ = evaluate(ckpt, protocol, progress=False)
            times["once"] += time.perf_counter() - t0
            results["once"] = _per_episode(once)
            t0 = time.perf_counter()
            results["per cell"] = _per_cell(learner, cfg, ds, protocol)
            times["per cell"] += time.perf_counter() - t0
    same = sorted(set(results["once"]) & set(results["per cell"]))
    diff = max(abs(results["once"][k] - results["per cell"][k]) for k in same)
    load = os.getloadavg()
    print(f"dataset={dataset} MAML {args.iterations} it, {args.episodes} episodes × {len(attacks)} attacks × {len(eps)} ε "
          f"({args.steps}-step), threads={args.threads}, rounds={args.rounds}, load {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}")
    print(f"adapt once, chunks of episodes: {times['once']:.1f} s")
    print(f"per cell, one episode at a time: {times['per cell']:.1f} s")
    print(f"speed-up: {times['per cell'] / times['once']:.2f}x; {len(same)} per-episode accuracies compared, "
          f"largest difference {diff:.3g} points")


if __name__ == "__main__":
    main()
