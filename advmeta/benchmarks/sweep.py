"""Benchmark of the runner: busy cores over a real grid slice, parallel efficiency, Ray Data banks.

Run: ``python -m advmeta.benchmarks.sweep [--grid paper-tables --methods maml,adml,aq,tafl]
[--trials 4] [--episodes 64] [--dataset omniglot]``.

- Grid slice (``--grid``): ``advmeta sweep`` run as a user runs it (a subprocess, the quick
  budget by default, a fresh folder: calibration, surrogate, banks and trials all included)
  while ``/proc/stat`` is sampled every 2 s. It prints the wall time, the fraction of the
  machine's core-seconds that were busy (system-wide: run it on a quiet machine), the same over
  the serial phase before the first trial finished, and Σ trial time ÷ (CPUs × wall).
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
    from advmeta.plan.budgets import get_budget
    from advmeta.plan.grids import expand
    from advmeta.ledger import Ledger
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


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of every core since boot, from ``/proc/stat``."""
    with open("/proc/stat") as f:
        fields = [float(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


def grid_slice(grid: str, methods: str, budget: str, dataset: str, data_root: str | None) -> dict[str, float]:
    """Run ``advmeta sweep`` on a slice of a real grid and measure how busy the cores were."""
    import subprocess
    import sys
    import threading

    from advmeta.ledger import Ledger

    samples: list[tuple[float, float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while True:
            samples.append((time.time(), *_cpu_times()))
            if stop.wait(2.0):
                samples.append((time.time(), *_cpu_times()))
                return

    with tempfile.TemporaryDirectory(prefix="advmeta-bench-slice-") as tmp:
        out = f"{tmp}/sweep"
        cmd = [sys.executable, "-m", "advmeta", "sweep", "--grid", grid, "--budget", budget, "--methods", methods,
               "--dataset", dataset, "-o", out, "--quiet"]
        if data_root:
            cmd += ["--data-root", data_root]
        load_before = os.getloadavg()
        sampler = threading.Thread(target=sample, daemon=True)
        t0 = time.time()
        sampler.start()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.time() - t0
        stop.set()
        sampler.join()
        if proc.returncode != 0:
            raise SystemExit(f"advmeta sweep failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        ledger = Ledger(out)
        manifest = json.loads(Path(out, "sweep.json").read_text())
        ids = [t["trial_id"] for t in manifest["trials"]]
        trial_s = [float(ledger.final_metrics(i)["trial_seconds"]) for i in ids]
        first_done = min(Path(out, "trials", i, "DONE.json").stat().st_mtime for i in ids)

    def busy_between(a: float, b: float) -> float:
        inside = [s for s in samples if a <= s[0] <= b] or samples
        (_, b0, t0_), (_, b1, t1) = inside[0], inside[-1]
        return (b1 - b0) / max(t1 - t0_, 1e-9)

    cpus = os.cpu_count() or 1
    return {"trials": len(ids), "cpus": cpus, "wall_s": wall, "sweep_wall_s": float(manifest["wall_seconds"]),
            "busy": busy_between(t0, t0 + wall), "busy_before_first_done": busy_between(t0, first_done),
            "until_first_done_s": first_done - t0, "sum_trial_s": sum(trial_s),
            "trial_efficiency": sum(trial_s) / (cpus * wall), "load_before": load_before[0]}


def bank_throughput(episodes: int, actors: int, dataset: str, data_root: str | None,
                    batch_size: int) -> dict[str, float]:
    """Episodes per second of a Ray Data bank versus the single-process loop."""
    from advmeta.bank import BankSpec, EpisodeBank, surrogate_key
    from advmeta.data import load_fewshot
    from advmeta.tune.banks import BankJob, make_bank_local, make_bank_ray, prepare_surrogate
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
            "speedup": min(local_s, local1_s) / ray_s, "identical_banks": float(same),
            # N one-thread processes with no overhead at all: the most any process pool can give here
            "ceiling": min(local_s, local1_s) / (local1_s / actors)}


def main() -> None:
    """Parse arguments, run both benchmarks, print the results (and JSON with ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", default=None, help="measure busy cores on this grid's slice (e.g. paper-tables)")
    p.add_argument("--methods", default="maml,adml,aq,tafl", help="the slice: methods of --grid")
    p.add_argument("--budget", default="quick", help="budget of the --grid slice")
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
    if args.grid:
        g = grid_slice(args.grid, args.methods, args.budget, dataset, args.data_root)
        results["grid_slice"] = g
        print(f"grid slice: advmeta sweep --grid {args.grid} --budget {args.budget} --methods {args.methods} "
              f"({g['trials']} trials, {dataset}, {g['cpus']} CPUs, load before {g['load_before']:.2f}): "
              f"wall {g['wall_s'] / 60:.1f} min (sweep.json wall_seconds {g['sweep_wall_s']:.0f} s)")
        print(f"  busy cores {100 * g['busy']:.1f} % of the wall time; {100 * g['busy_before_first_done']:.1f} % "
              f"over the first {g['until_first_done_s'] / 60:.1f} min (calibration, surrogate, banks, until the "
              f"first trial ended); Σ trial time ÷ (CPUs × wall) = {g['trial_efficiency']:.2f}")
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
        print(f"  ceiling of {b['actors']} one-thread processes without any overhead (the one-thread loop's time ÷ "
              f"{b['actors']}): ×{b['ceiling']:.2f} over the faster loop; Ray Data reaches "
              f"{100 * b['speedup'] / b['ceiling']:.0f} % of it")
    if args.json:
        print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
