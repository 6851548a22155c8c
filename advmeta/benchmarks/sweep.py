"""Benchmark of the runner: a sweep's parallel efficiency, and Ray Data episode-bank throughput.

Run: ``python -m advmeta.benchmarks.sweep [--trials 4] [--episodes 64] [--dataset omniglot]``.

- Parallel efficiency = Σ trial times ÷ (workers × wall time): 1.0 means the workers were busy
  with trial work the whole time; the rest is Ray start-up, scheduling and result merging.
  Trial time is measured inside the trainable (training + evaluation); the wall time is the
  sweep's, with and without Ray's start-up.
- Episode banks: the same bank (clean + surrogate FGSM at two ε) made by Ray Data's actor pool
  and by a single-process loop; the surrogate is trained before either is timed.

This module imports Ray through :mod:`advmeta.tune`; it is a script, not part of the core.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def sweep_efficiency(trials: int, workers: int, dataset: str, method: str, data_root: str | None) -> dict[str, float]:
    """Run ``trials`` real trials of ``method`` at the smoke budget on ``workers`` CPUs."""
    from advmeta.tune.budgets import get_budget
    from advmeta.tune.grids import expand
    from advmeta.tune.ledger import Ledger
    from advmeta.tune.runner import SweepOptions, run_sweep

    grid = {"tables": [{"name": "bench", "methods": [method], "k_shot": [1],
                        "hparams": {"inner_lr": [0.01 * (i + 1) for i in range(trials)]},
                        "evals": [{"scenario": "whitebox", "attacks": ["fgsm"], "eps": ["2/255"]}]}]}
    specs = expand("bench", grid, get_budget("smoke"), dataset=dataset, seed=0)
    with tempfile.TemporaryDirectory(prefix="advmeta-bench-") as tmp:
        t0 = time.perf_counter()
        out = run_sweep("bench", specs, tmp, SweepOptions(cpus_per_trial=1, num_cpus=workers, progress=False,
                                                            data_root=data_root, device="cpu"))
        wall = time.perf_counter() - t0
        ledger = Ledger(tmp)
        per_trial = [float(ledger.final_metrics(s.trial_id)["trial_seconds"]) for s in specs]
        first_start = min(Path(tmp, "trials", s.trial_id, "spec.json").stat().st_mtime for s in specs)
        last_done = max(Path(tmp, "trials", s.trial_id, "DONE.json").stat().st_mtime for s in specs)
    busy = sum(per_trial)
    span = last_done - first_start
    return {"trials": len(specs), "workers": workers, "done": out.done, "wall_s": wall, "trials_span_s": span,
            "sum_trial_s": busy, "efficiency_wall": busy / (workers * wall),
            "efficiency_trials_span": busy / (workers * span), "mean_trial_s": busy / len(per_trial)}


def bank_throughput(episodes: int, actors: int, dataset: str, data_root: str | None,
                    batch_size: int) -> dict[str, float]:
    """Episodes per second of a Ray Data bank versus the single-process loop."""
    from advmeta.bank import BankSpec, EpisodeBank, surrogate_key
    from advmeta.data import load_fewshot
    from advmeta.tune.episodes import BankJob, make_bank_local, make_bank_ray, prepare_surrogate
    from advmeta.tune.session import ray_session

    size, steps = 28, 100
    shape = tuple(load_fewshot(dataset, data_root=data_root, image_size=size).image_shape)
    spec = BankSpec(dataset=dataset, split="test", n_way=5, k_shot=1, q_query=15, seed=0, n_episodes=episodes,
                    eps=("2/255", "0.2/255"), surrogate=surrogate_key("conv4", steps, 0, size),
                    image_shape=shape, image_size=size)  # type: ignore[arg-type]
    job = BankJob(spec, data_root, steps, "conv4", batch_size, actors, 0.5, 0.0, "cpu")
    prepare_surrogate(job)
    import torch

    with tempfile.TemporaryDirectory(prefix="advmeta-bank-") as tmp:
        default_threads = torch.get_num_threads()
        local_s = make_bank_local(f"{tmp}/local", BankJob(**{**job.__dict__, "actors": 0}))
        torch.set_num_threads(1)  # what each Ray actor gets (OMP_NUM_THREADS=1): the fairer baseline
        local1_s = make_bank_local(f"{tmp}/local1", BankJob(**{**job.__dict__, "actors": 0}))
        torch.set_num_threads(default_threads)
        with ray_session(num_cpus=os.cpu_count()) as _:
            make_bank_ray(f"{tmp}/warm", BankJob(**{**job.__dict__, "spec": BankSpec(**{**spec.__dict__,
                                                                                        "n_episodes": batch_size})}))
            ray_s = make_bank_ray(f"{tmp}/ray", job)
        a, b = EpisodeBank(f"{tmp}/local"), EpisodeBank(f"{tmp}/ray")
        same = all((a.arrays(range(episodes), e)[k] == b.arrays(range(episodes), e)[k]).all()
                   for e in spec.eps for k in ("query_adv_x", "support_x", "classes"))
    return {"episodes": episodes, "actors": actors, "local_s": local_s, "local_threads": default_threads,
            "local1_s": local1_s, "ray_s": ray_s, "local_eps_per_s": episodes / local_s,
            "local1_eps_per_s": episodes / local1_s, "ray_eps_per_s": episodes / ray_s,
            "speedup": min(local_s, local1_s) / ray_s, "identical_banks": float(same)}


def main() -> None:
    """Parse arguments, run both benchmarks, print the results (and JSON with ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--method", default="maml")
    p.add_argument("--episodes", type=int, default=64)
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dataset", default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--skip-sweep", action="store_true")
    p.add_argument("--skip-bank", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    from advmeta.data import resolve_default_dataset
    from advmeta.env import versions

    dataset = args.dataset or resolve_default_dataset(args.data_root)[0]
    results: dict[str, object] = {"dataset": dataset, "cpus": os.cpu_count(), "versions": versions()}
    if not args.skip_sweep:
        s = sweep_efficiency(args.trials, args.workers, dataset, args.method, args.data_root)
        results["sweep"] = s
        print(f"sweep: {s['trials']} {args.method} trials (smoke budget, {dataset}) on {s['workers']} workers: "
              f"wall {s['wall_s']:.1f} s (trials' span {s['trials_span_s']:.1f} s), Σ trial time {s['sum_trial_s']:.1f} s "
              f"(mean {s['mean_trial_s']:.1f} s)")
        print(f"  parallel efficiency Σ/(workers×wall) = {s['efficiency_wall']:.2f}; "
              f"excluding Ray start-up and merging (trials' span) = {s['efficiency_trials_span']:.2f}")
    if not args.skip_bank:
        b = bank_throughput(args.episodes, args.actors, dataset, args.data_root, args.batch_size)
        results["bank"] = b
        print(f"episode bank: {b['episodes']} episodes × 2 ε (5-way 1-shot, 15 queries, 28 px): "
              f"single process {b['local_s']:.1f} s with {b['local_threads']} torch threads "
              f"({b['local_eps_per_s']:.2f} ep/s), {b['local1_s']:.1f} s with 1 thread "
              f"({b['local1_eps_per_s']:.2f} ep/s); Ray Data, {b['actors']} actors × 0.5 CPU: {b['ray_s']:.1f} s "
              f"({b['ray_eps_per_s']:.2f} ep/s); speed-up over the faster loop ×{b['speedup']:.2f}; "
              f"banks identical: {bool(b['identical_banks'])}")
    if args.json:
        print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
