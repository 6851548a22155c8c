"""Before a sweep's trials: calibrate ε on the grid's own MAML, beside the surrogate's training.

Where a table's ε is calibrated (:mod:`advmeta.plan.epsplan`), the sweep first trains the
grid's MAML 5-way 1-shot trial, walks the ε ladder on validation episodes
(:func:`advmeta.calibration.search.calibrate`) and only then knows the trials (their ε is part of them).
That MAML is the grid's own trial: its checkpoint is handed to the trial, which then only
evaluates. The fixed surrogate (ADML's protocol), which needs no ε, trains at the same time in
a second process, so both cores work. The outcome is cached in ``<sweep>/calibration.json``
(keyed by everything that produced it), so a re-run or a resumed sweep finds the same ε.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from advmeta.calibration.search import LADDER, THRESHOLD, Calibration
from advmeta.families import RunContext
from advmeta.plan.trial import TrialSpec

CALIBRATION_FILE = "calibration.json"


@dataclass(frozen=True)
class CalibrationJob:
    """What to calibrate with: the MAML trial's training config and the rule's settings."""

    train_config: dict[str, Any]
    ladder: tuple[str, ...] = LADDER
    threshold: float = THRESHOLD
    n_episodes: int = 100
    steps: int = 20
    threads: int = 1
    q_query: int | None = None
    surrogate_drop: float | None = None
    """Also calibrate the surrogate table's ε (:func:`advmeta.calibration.search.calibrate_surrogate`): the
    first of ε*·(1 … 2) at which this MAML loses this many points to the surrogate (None: no)."""

    def key(self) -> str:
        """Hash of everything the calibrated ε depends on (not where or how fast it runs)."""
        from advmeta.train import RUN_ONLY_FIELDS

        ident = {"train": {k: v for k, v in self.train_config.items() if k not in RUN_ONLY_FIELDS},
                 "ladder": list(self.ladder), "threshold": self.threshold, "n_episodes": self.n_episodes,
                 "steps": self.steps, "q_query": self.q_query}
        if self.surrogate_drop is not None:
            ident["surrogate_drop"] = self.surrogate_drop
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]


def calibration_spec(specs: Sequence[TrialSpec]) -> TrialSpec | None:
    """The grid's MAML trial the calibration uses: 1-shot (the fewest shots), first in grid order."""
    maml = [s for s in specs if s.method == "maml"]
    if not maml:
        return None
    return min(maml, key=lambda s: int(s.train.get("k_shot", 1)))


def job_for(spec: TrialSpec, ctx: RunContext, n_episodes: int, threads: int, q_query: int | None,
            surrogate_drop: float | None = None) -> CalibrationJob:
    """The :class:`CalibrationJob` of a MAML trial (``q_query``: the test episodes' queries)."""
    from advmeta.families.meta import train_config

    cfg = train_config(spec, ctx)
    return CalibrationJob(train_config=cfg.to_dict(), n_episodes=n_episodes, threads=threads, q_query=q_query,
                          surrogate_drop=surrogate_drop)


def cached(folder: str, job: CalibrationJob) -> dict[str, Any] | None:
    """The calibration record in ``folder`` for this job, if any (``record["calibration"]``)."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != job.key() or "calibration" not in data:
        return None
    return dict(data)


def _work_dir(folder: str, job: CalibrationJob) -> Path:
    return Path(folder) / "calibration" / job.key()


def _calibrate_worker(folder: str, job: CalibrationJob, progress: bool = False) -> dict[str, Any]:
    """Train the MAML trial (resumable) and walk the ladder; runs in its own process.

    With ``progress`` it prints a line when training ends and one per rung (plain lines: the
    surrogate's process shares the terminal).
    """
    from advmeta.calibration.search import calibrate
    from advmeta.env import set_threads
    from advmeta.train import TrainConfig, train

    set_threads(job.threads)
    cfg = TrainConfig(**{**job.train_config, "threads": job.threads})
    t0 = time.perf_counter()
    ckpt, metrics = train(cfg, _work_dir(folder, job), resume=True, progress=False)
    train_s = time.perf_counter() - t0
    if progress:
        print(f"calibration: MAML trained in {train_s:.0f} s (validation {metrics.get('val_acc', float('nan')):.1f} %); "
              f"attacking up to {len(job.ladder).bit_length()} rungs", file=sys.stderr, flush=True)
    cal = calibrate(ckpt, job.ladder, job.threshold, n_episodes=job.n_episodes, steps=job.steps,
                    q_query=job.q_query, device=cfg.device, progress=progress)
    return {"checkpoint": str(Path(ckpt).resolve()), "calibration": cal.to_dict(), "val_acc": metrics.get("val_acc"),
            "train_seconds": train_s, "seconds": time.perf_counter() - t0}


def _surrogate_calibrate_worker(checkpoint: str, start: str, job: CalibrationJob, progress: bool = False,
                                ) -> dict[str, Any]:
    """The surrogate table's ε on the calibration's MAML (the surrogate is in the cache by now)."""
    from advmeta.calibration.search import calibrate_surrogate
    from advmeta.env import set_threads

    set_threads(job.threads)
    t0 = time.perf_counter()
    sc = calibrate_surrogate(checkpoint, start, drop=float(job.surrogate_drop or 0.0), n_episodes=job.n_episodes,
                             q_query=job.q_query, device=str(job.train_config.get("device", "cpu")), progress=progress)
    return {**sc.to_dict(), "seconds": time.perf_counter() - t0}


def _surrogate_worker(train_config: dict[str, Any], threads: int) -> float:
    """Train (or find in the cache) the fixed surrogate of a training config; its seconds."""
    import torch

    from advmeta.env import set_threads
    from advmeta.train import TrainConfig, load_dataset, make_surrogate

    set_threads(threads)
    t0 = time.perf_counter()
    cfg = TrainConfig(**{**train_config, "threads": threads})
    make_surrogate(cfg, load_dataset(cfg), torch.device("cpu"), progress=False)
    return time.perf_counter() - t0


def surrogate_configs(specs: Sequence[TrialSpec], ctx: RunContext) -> list[dict[str, Any]]:
    """The distinct surrogates the trials need (training configs that name them), CPU only."""
    from advmeta.learners import get_learner, learner_names
    from advmeta.families.meta import train_config

    out: dict[str, dict[str, Any]] = {}
    for s in specs:
        if s.method not in learner_names():  # not a few-shot learner
            continue
        needs = get_learner(s.method).needs_surrogate or any(ev.get("scenario") == "surrogate" for ev in s.evals)
        if not needs:
            continue
        cfg = train_config(s, ctx)
        key = json.dumps([cfg.dataset, cfg.image_size, cfg.split_scheme, cfg.surrogate_arch, cfg.surrogate_steps,
                          cfg.surrogate_classes, cfg.seed, cfg.cache_dir])
        out.setdefault(key, cfg.to_dict())
    return list(out.values())


def run(folder: str, job: CalibrationJob, surrogates: Sequence[Mapping[str, Any]], progress: bool = True,
        ) -> tuple[Calibration, dict[str, Any]]:
    """Calibrate (and train the surrogates beside it), record ``calibration.json``; the outcome.

    Returns:
        The :class:`Calibration` and the record written (checkpoint, MAML's validation
        accuracy, seconds).
    """
    from advmeta.atomic import write_text_atomic

    t0 = time.perf_counter()
    if progress:
        print(f"calibrating ε: training the grid's MAML 5-way 1-shot ({job.train_config['iterations']} it), "
              f"then PGD-{job.steps} on {job.n_episodes} validation episodes up the ladder "
              f"{', '.join(job.ladder)} until accuracy < {job.threshold:g} %"
              + (f"; the surrogate trains beside it" if surrogates else ""), file=sys.stderr, flush=True)
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=1 + len(surrogates), mp_context=ctx) as pool:
        fut = pool.submit(_calibrate_worker, folder, job, progress)
        sur = [pool.submit(_surrogate_worker, dict(c), job.threads) for c in surrogates]
        record = fut.result()
        sur_seconds = [f.result() for f in sur]
        cal = Calibration.from_dict(record["calibration"])
        if job.surrogate_drop is not None and surrogates:
            # After the surrogate's process: it is cached now, so this one never trains its own.
            record["surrogate"] = pool.submit(_surrogate_calibrate_worker, record["checkpoint"], cal.eps, job,
                                              progress).result()
    record.update({"key": job.key(), "job": {"ladder": list(job.ladder), "threshold": job.threshold,
                                            "n_episodes": job.n_episodes, "steps": job.steps},
                   "surrogate_seconds": sur_seconds, "wall_seconds": time.perf_counter() - t0})
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(folder) / CALIBRATION_FILE, json.dumps(record, indent=1, sort_keys=True, default=str))
    _write_curve(folder, cal)
    if progress:
        curve = ", ".join(f"{p.eps}: {p.acc:.1f}%" for p in cal.curve)
        how = "first rung below" if cal.below else "no rung fell below; the ladder's top is used"
        print(f"calibrated ε* = {cal.eps} ({how} {cal.threshold:g} %; MAML PGD-{job.steps}: {curve}; "
              f"{time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        if "surrogate" in record:
            sc = record["surrogate"]
            reached = "reached" if sc["reached"] else "not reached; the top rung is used"
            print(f"surrogate table ε = {sc['eps']} (MAML's drop ≥ {sc['drop']:g} points {reached})",
                  file=sys.stderr, flush=True)
    return cal, record


def _write_curve(folder: str, cal: Calibration) -> None:
    import pandas as pd

    from advmeta.eps import parse_eps
    from advmeta.results import write_parquet_atomic

    frame = pd.DataFrame([{"eps_str": p.eps, "eps": parse_eps(p.eps), "acc": p.acc, "acc_ci95": p.acc_ci95,
                           "clean_acc": p.clean_acc, "chosen": p.eps == cal.eps} for p in cal.curve])
    write_parquet_atomic(frame, Path(folder) / "calibration.parquet")


def hand_over(folder: str, record: Mapping[str, Any], job: CalibrationJob, specs: Sequence[TrialSpec],
              ctx: RunContext) -> str | None:
    """Give the calibration's MAML checkpoint to the sweep's identical MAML trial; its id.

    Only for local sweep folders (a trial on remote storage trains its own, with the same
    numbers). The trial's ``train`` then resumes at its last iteration and only evaluates.
    """
    from advmeta.train import RUN_ONLY_FIELDS
    from advmeta.families.meta import train_config
    from advmeta.ledger import Ledger

    ledger = Ledger(folder)
    src = Path(str(record.get("checkpoint", "")))
    if not ledger.local or not src.is_file():
        return None
    want = {k: v for k, v in job.train_config.items() if k not in RUN_ONLY_FIELDS}
    for s in specs:
        if s.method != "maml":
            continue
        if {k: v for k, v in train_config(s, ctx).to_dict().items() if k not in RUN_ONLY_FIELDS} != want:
            continue
        dst = Path(ledger.work_dir(s.trial_id)) / "checkpoint.pt"
        if not dst.exists() and not ledger.is_done(s.trial_id):
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_suffix(".tmp")
            shutil.copy2(src, tmp)
            tmp.replace(dst)
        return s.trial_id
    return None
