"""The GPU check, one prepared run of a few minutes (never part of the tests).

``python -m advmeta.benchmarks.gpu [--reps 3] [--skip-sweep]`` on a machine with CUDA prints:

1. MAML meta-training tasks/s on Conv4 at 3×84×84, 5-way 1- and 5-shot, meta-batch 4 and 32,
   first and second order: the per-task loop, the batched tasks (``vmap`` with the exact batch
   norm) and ``higher`` (when installed), with the ratios ``vmap/loop`` and ``vmap/higher``
   (the issue's goal: batched ≥ 3× ``higher``); AQ with its training attack likewise.
2. A smoke sweep with ``--gpus-per-trial 0.25``: four trials sharing one GPU, its wall time and
   how many trials ran at once (from the trials' start and end times).

The loop-or-batched choice per device (``TrainConfig.vectorize = "auto"``) is read from (1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _overlap(folder: Path) -> int:
    """The most trials of a sweep folder that ran at the same time (each trial's span: its DONE
    record's time, back by its ``trial_seconds``)."""
    spans = []
    for done in folder.glob("trials/*/DONE.json"):
        seconds = float(json.loads(done.read_text())["metrics"].get("trial_seconds", 0.0))
        spans.append((done.stat().st_mtime - seconds, done.stat().st_mtime))
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--skip-meta", action="store_true")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA device here: this check needs a GPU (the CPU numbers come from advmeta.benchmarks.meta)")
    from advmeta.benchmarks.meta import Shape, table
    from advmeta.env import configure_allocator, resolve_device

    configure_allocator()
    device = resolve_device("cuda")
    print(f"device {torch.cuda.get_device_name(device)}, torch {torch.__version__}", flush=True)
    if not args.skip_meta:
        for k in (1, 5):
            for tasks in (4, 32):
                table(device, Shape.at(84, k, tasks), args.reps, vmap=True,
                      settings=(("maml", 1, True), ("maml", 1, False), ("maml", 5, True), ("maml", 5, False),
                                ("aq", 1, False)))
    if not args.skip_sweep:
        with tempfile.TemporaryDirectory(prefix="advmeta-gpu-") as tmp:
            cmd = [sys.executable, "-m", "advmeta", "tune", "maml", "--inner-lr", "0.1,0.2,0.3,0.4", "--budget", "smoke",
                   "--dataset", "glyphs", "--gpus-per-trial", "0.25", "--cpus-per-trial", "0.25", "--output",
                   str(Path(tmp) / "sweep"), "--no-report", "--quiet"]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
            wall = time.perf_counter() - t0
            print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:])
            print(f"smoke sweep, 4 trials at --gpus-per-trial 0.25: rc {proc.returncode}, wall {wall:.1f} s, "
                  f"at most {_overlap(Path(tmp) / 'sweep')} trials at once")


if __name__ == "__main__":
    main()
