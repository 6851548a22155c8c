"""What a run of a sweep did, and how it is told: the :class:`SweepOutcome`, the summary lines
and the report written at the end (:func:`finish`), the exit code (:func:`exit_code`).

Plain Python over the sweep's folder: :func:`advmeta.tune.runner.run` calls it when the trials
are done; nothing here talks to Ray.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from advmeta.ledger import Ledger
from advmeta.plan.trial import Resources


@dataclass
class SweepOutcome:
    """What a run of a sweep did."""

    summary: pd.DataFrame
    episodes: pd.DataFrame
    total: int
    done: int
    failed: int
    stopped: int
    pending: int
    wall_seconds: float
    trial_seconds: list[float]
    resources: Resources | None
    """What the trials ran with (None: none ran)."""

    @property
    def complete(self) -> bool:
        """Every trial finished or recorded as failed."""
        return self.pending == 0


def finish(name: str, folder: str, outcome: SweepOutcome, started_at: float, previous_wall: float,
           report: bool = True, calibrated: bool = False) -> int:
    """After the trials (:func:`advmeta.tune.runner.run_sweep`): record the wall time (this run's from
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
