"""What ``advmeta sweep`` and ``advmeta tune`` share once their options are parsed into a request:
plan it (:mod:`advmeta.plan.sweeps`), then — holding the folder's lock — list it (``--dry-run``)
or run it (:func:`advmeta.tune.runner.run_sweep`) and print the summary (:func:`plan_and_run`).

Kept out of the Typer modules so that it can be tested and reused without a command line.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from advmeta.ledger import Ledger
from advmeta.plan.sweeps import Plan
from advmeta.plan.trial import TrialSpec
from advmeta.tune.runner import SweepOutcome


def plan_and_run(folder: str, make_plan: Plan | Callable[[], Plan], options: Callable[[Plan], Any], *,
                 dry_run: bool, report: bool, label: Callable[[TrialSpec], str]) -> int:
    """The one road of ``sweep`` and ``tune`` after parsing: take the folder's lock, plan
    (``make_plan``: :func:`advmeta.plan.plan_grid` or a resumed plan, called holding the lock; or a
    :class:`~advmeta.plan.sweeps.Plan` made before, as a search is), then list the trials
    (``dry_run``) or run them with ``options(plan)`` (the :class:`advmeta.tune.runner.SweepOptions`)
    and finish. Returns the exit code."""
    from advmeta.lock import folder_lock

    started = time.time()
    with folder_lock(folder, enabled=not dry_run):  # a second run on this folder exits 2 naming this one
        plan = make_plan if isinstance(make_plan, Plan) else make_plan()
        if dry_run:
            list_trials(plan.trials, folder, label)
            return 0
        from advmeta.tune.runner import run_sweep

        run_info, previous = begin(folder, {**plan.manifest, "started_at": started})
        outcome = run_sweep(plan.name, plan.trials, folder, options(plan), run_info)
        # the report is written inside the lock
        return finish(plan.name, folder, outcome, run_info["started_at"], previous, report=report,
                      calibrated=plan.calibrated_now)


def sweep_dir(name: str, output: str | None, storage: str | None) -> str:
    """The sweep's folder: ``--output``, else ``<storage>/<name>``, else ``results/<name>``."""
    if output:
        return output
    root = storage or "results"
    return root.rstrip("/") + "/" + name


def list_trials(specs: Sequence[TrialSpec], folder: str, label: Callable[[TrialSpec], str]) -> None:
    """``--dry-run``: one line per trial (its id and ``label(spec)``), then the count."""
    for spec in specs:
        print(f"{spec.trial_id}  {label(spec)}")
    print(f"{len(specs)} trials -> {folder}")


def begin(folder: str, info: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Before :func:`advmeta.tune.runner.run_sweep`: its manifest facts (``info`` plus the command
    line, the working folder and the start time) and the wall seconds of earlier runs of ``folder``."""
    previous = (Ledger(folder).read_manifest() or {}).get("wall_seconds_total", 0.0) if "://" not in folder else 0.0
    return ({**info, "command": shlex.join(["advmeta", *sys.argv[1:]]), "cwd": os.getcwd(),
             "started_at": float(info.get("started_at") or time.time())}, float(previous or 0.0))


def finish(name: str, folder: str, outcome: SweepOutcome, started_at: float, previous_wall: float,
           report: bool = True, calibrated: bool = False) -> int:
    """After :func:`advmeta.tune.runner.run_sweep`: record the wall time (this run's from
    ``started_at``, and with earlier runs' ``previous_wall``), write the report, print the summary
    lines; return the exit code (:func:`exit_code`). ``calibrated``: this run calibrated ε (its
    wall time says so)."""
    wall = time.time() - started_at
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    manifest = (Ledger(folder).read_manifest() or {}) if "://" not in folder else {}
    Ledger(folder).update_manifest({"wall_seconds": wall, "wall_seconds_total": previous_wall + wall,
                                    "load_average": list(load), "cpus": os.cpu_count()})
    lines = [f"{name}: {outcome.done}/{outcome.total} trials done"
             + (f", {outcome.failed} failed" if outcome.failed else "")
             + (f", {outcome.stopped} stopped early" if outcome.stopped else "")
             + (f", {outcome.pending} not run (interrupted: re-run the same command to continue)"
                if outcome.pending else "")
             + f"; wall time {wall:.0f} s ({wall / 60:.1f} min)"
             + (" including the ε calibration" if calibrated else "")
             + (f" (estimated {est / 60:.0f} min)" if (est := manifest.get("estimate_seconds")) else "")
             + f", on {os.cpu_count()} CPUs, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}",
             f"results: {folder}/summary.parquet ({len(outcome.summary)} rows), "
             f"{folder}/episodes.parquet ({len(outcome.episodes)} rows)"]
    if outcome.failed:
        errs = outcome.summary[outcome.summary["status"] == "error"][["method", "error"]].drop_duplicates()
        for method, err in errs.head(5).itertuples(index=False):
            lines.append(f"failed: {method}: {str(err)[:200]}")
    curves = 0
    if "://" not in folder:
        from advmeta.results import read_table

        curves = len(read_table(folder, "curves"))  # every trainer's learning curves
        if curves:
            lines[-1] += f", {folder}/curves.parquet ({curves} rows)"
    if report and (len(outcome.summary) or curves) and "://" not in folder:
        from advmeta.report import write_report

        paths = write_report(folder)
        lines.append(f"report: {paths['markdown']} ({len(paths['figures'])} figures), "
                     f"{Path(paths['markdown']).with_name('index.html')} (one page, figures inline)")
        verdicts = ", ".join(f"{n} {v}" for v, n in sorted(paths["verdicts"].items()))
        lines.append(f"claims: {paths['claims']} ({verdicts or 'no claims'})")
        flags = paths.get("flags") or []
        lines.append(f"evaluation checks: {folder}/checks.parquet; "
                     + ("no trial flagged" if not flags else f"{len(flags)} kind(s) of flag (see the report):"))
        lines += [f"  {f}" for f in flags]
    for line in lines:
        print(line)
    return exit_code(outcome)


def exit_code(outcome: SweepOutcome) -> int:
    """0 when every trial finished, 1 when some failed, 130 when the sweep was interrupted."""
    if outcome.pending:
        return 130
    return 1 if outcome.failed else 0
