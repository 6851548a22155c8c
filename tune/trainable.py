"""The function trainable every trial runs: train with the core, report to Tune, evaluate, record.

Resuming has two layers. Within one sweep run, Ray Tune retries a crashed trial
(``FailureConfig(max_failures)``) and :func:`ray.tune.get_checkpoint` hands back the last
checkpoint reported with ``tune.report``. Across runs (``advmeta sweep --resume`` after the
driver was killed), the trial's work folder in the ledger still holds its checkpoints and the
core's ``train(..., resume=True)`` continues from there; finished trials are skipped through
the ledger and never recomputed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from advmeta.env import provenance, set_threads
from advmeta.tune.families import RunContext, TrialOutput, get_family
from advmeta.tune.ledger import Ledger
from advmeta.tune.trial import TrialSpec

_SKIP = {"sweep", "trial_id", "status", "error"}


def eps_sources(spec: TrialSpec) -> dict[str, str]:
    """``eps_str`` → where that ε came from (paper / calibrated / user / grid), from the trial's evals."""
    from advmeta.eps import format_eps

    out: dict[str, str] = {}
    for ev in spec.evals:
        for e in ev.get("eps", []) or []:
            try:
                out.setdefault(format_eps(e), str(ev.get("eps_source", "grid")))
            except Exception:  # noqa: BLE001 - a malformed ε is reported by the evaluation itself
                continue
    return out


def _finish_rows(rows: list[dict[str, Any]], spec: TrialSpec, device: str) -> list[dict[str, Any]]:
    """Add the id, status and provenance columns the core leaves to the runner."""
    sources = eps_sources(spec)
    prov = provenance(device)
    out = []
    for row in rows:
        full = {k: v for k, v in row.items() if k not in _SKIP}
        full.update({"sweep": spec.sweep, "trial_id": spec.trial_id, "status": "ok", "error": ""})
        full["eps_source"] = sources.get(str(full.get("eps_str")), "") if full.get("eps") else ""
        full["ray_version"] = prov["ray_version"]  # the core's own rows say "absent"
        for key, value in prov.items():
            full.setdefault(key, value)
        out.append(full)
    return out


def _finish_curves(rows: list[dict[str, Any]], spec: TrialSpec, device: str) -> list[dict[str, Any]]:
    """The id and provenance columns of a trial's learning-curve rows."""
    if not rows:
        return []
    extra = {"sweep": spec.sweep, "trial_id": spec.trial_id, "budget": spec.budget, **provenance(device)}
    return [{**r, **extra} for r in rows]


def _restore_tune_checkpoint(work: Path) -> None:
    """Copy the files of Tune's last checkpoint into ``work`` where they are missing there."""
    from ray import tune

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return
    with ckpt.as_directory() as src:
        for path in Path(src).rglob("*"):
            target = work / path.relative_to(src)
            if path.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)


def run_trial(config: dict[str, Any], ctx: RunContext) -> None:
    """Ray Tune function trainable for one trial.

    Args:
        config: ``{"trial": TrialSpec.to_dict(), "hp": {field: value}}`` — ``hp`` holds the
            values Tune sampled from a search space (empty for grids).
        ctx: where the sweep lives and how trials run (shared by every trial).
    """
    from ray import tune

    spec = TrialSpec.from_dict(config["trial"]).with_hparams(config.get("hp", {}))
    ledger = Ledger(ctx.sweep_dir)
    tid = spec.trial_id
    if ledger.is_done(tid):
        # Finished in an earlier run whose driver died before it could record the fact.
        tune.report({**ledger.final_metrics(tid), "trial_id": tid, "done": 1})
        return
    ledger.write_spec(spec)
    threads = max(1, int(float(os.environ.get("OMP_NUM_THREADS", ctx.threads) or 1)), ctx.threads)
    set_threads(threads)
    work = Path(ledger.work_dir(tid))
    work.mkdir(parents=True, exist_ok=True)
    ledger.sync_work(tid, str(work), upload=False)
    _restore_tune_checkpoint(work)

    def report(metrics: dict[str, Any], ckpt_path: Path | None) -> None:
        clean = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}
        clean["trial_id"] = tid
        if ckpt_path is None:
            tune.report(clean)
            return
        ledger.sync_work(tid, str(work), upload=True)
        with tempfile.TemporaryDirectory(prefix="advmeta-ckpt-") as tmp:
            src = Path(ckpt_path)
            if src.is_dir():
                shutil.copytree(src, Path(tmp) / src.name)
            else:
                shutil.copy2(src, Path(tmp) / src.name)
            tune.report(clean, checkpoint=tune.Checkpoint.from_directory(tmp))

    device = ctx.device
    if device == "auto":
        import ray

        # A trial uses a GPU only if Ray gave it one (GPU-less trials on a GPU node stay off it).
        device = "cuda" if ray.get_gpu_ids() else "cpu"
    run_ctx = RunContext(sweep_dir=ctx.sweep_dir, work_dir=str(work), data_root=ctx.data_root,
                         device=device, threads=threads, banks=ctx.banks, progress=False)
    family = get_family(spec.family)
    t0 = time.perf_counter()
    out = TrialOutput(*family.run(spec, run_ctx, report))
    rows, episode_rows, final = out.rows, out.episodes, dict(out.final)
    device = str(final.pop("device", "cpu"))
    rows = _finish_rows(rows, spec, device)
    episode_rows = [{**r, "sweep": spec.sweep, "trial_id": tid} for r in episode_rows]
    check_rows = [{**r, "sweep": spec.sweep, "trial_id": tid} for r in out.checks]
    curve_rows = _finish_curves(out.curves, spec, device)
    final = {k: v for k, v in final.items() if isinstance(v, (int, float, str, bool))}
    final["trial_seconds"] = time.perf_counter() - t0
    ledger.write_result(spec, rows, episode_rows, final, check_rows, curve_rows)
    tune.report({**final, "trial_id": tid, "done": 1})
