"""What ``advmeta sweep`` and ``advmeta tune`` share after parsing: paths, the run, the summary.

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

from advmeta.errors import ConfigError
from advmeta.tune.ledger import Ledger
from advmeta.tune.runner import SweepOutcome
from advmeta.tune.trial import TrialSpec


def resolve_dataset(dataset: str | None, data_root: str | None) -> str:
    """The dataset named, or the default one (first real dataset found, else glyphs — said aloud).

    Raises:
        ConfigError: an unknown dataset name.
    """
    from advmeta.data import dataset_names, resolve_default_dataset

    if dataset is None or dataset == "auto":
        name, announcement = resolve_default_dataset(data_root)
        if announcement:
            print(f"note: {announcement}", file=sys.stderr)
        else:
            print(f"dataset: {name} (the first real dataset found; choose another with --dataset)", file=sys.stderr)
        return name
    if dataset not in dataset_names():
        raise ConfigError(f"unknown dataset {dataset!r}; known: {', '.join(dataset_names())}")
    return dataset


def plan_sweep(name: str, data: dict[str, Any], budget: str, dataset: str, seed: int, methods: Sequence[str] | None,
               user_eps: Sequence[str] | None, folder: str, *, data_root: str | None = None, device: str = "auto",
               cpus_per_trial: float | None = None, dry_run: bool = False,
               progress: bool = True) -> tuple[list[TrialSpec], dict[str, Any]]:
    """The trials of a grid with every table's ε resolved (calibrating first where needed).

    Where a table's ε must be calibrated (:mod:`advmeta.tune.epsplan`) and ``folder`` holds no
    calibration for this grid's MAML yet, the calibration runs now (not on ``dry_run``: the
    listing then shows the pending ε as ``eps*``).

    Returns:
        The trials and the facts for the manifest: ``table_eps`` (ε and source per table) and
        ``calibration`` (the curve and choice, when calibrated).

    Raises:
        ConfigError: a malformed ``--eps``, or a calibrated ε on a grid without a MAML trial.
    """
    from advmeta.calibrate import SURROGATE_DROP, Calibration
    from advmeta.eps import parse_eps
    from advmeta.tune import calibration as calib
    from advmeta.tune.budgets import get_budget
    from advmeta.tune.epsplan import PENDING, as_list, needs_calibration, plan, surrogate_tables
    from advmeta.tune.families import RunContext
    from advmeta.tune.grids import expand
    from advmeta.tune.validate import check_episode_shapes, check_eps_value

    b = get_budget(budget, dataset)
    for e in user_eps or []:
        check_eps_value(e, "--eps")  # malformed, or above the largest ε advmeta accepts
        if parse_eps(e) <= 0:
            raise ConfigError(f"--eps {e}: ε must be > 0")
    info: dict[str, Any] = {}
    calibrated, sur_eps, record, job = None, None, None, None
    ctx = RunContext(sweep_dir=folder, data_root=data_root, device=device)
    tables = needs_calibration(data, dataset, user_eps)
    if tables:
        provisional = expand(name, data, b, dataset=dataset, seed=seed)
        check_episode_shapes(provisional, data_root)  # before calibrating on them
        cal_spec = calib.calibration_spec(provisional)
        if cal_spec is None:
            raise ConfigError(f"tables {', '.join(tables)} need an ε calibrated on the grid's MAML, but the grid has "
                              f"no MAML trial on {dataset}; pass --eps k/255")
        threads = max(1, int(cpus_per_trial or 1))
        drop = SURROGATE_DROP if surrogate_tables(data, dataset, user_eps) else None
        job = calib.job_for(cal_spec, ctx, b.calibration_episodes, threads, b.q_query, surrogate_drop=drop)
        record = calib.cached(folder, job)
        if record is None and progress and not dry_run:  # the cost first, then the calibration's own lines
            keep = [s for s in provisional if methods is None or s.method in methods]
            say_estimate(keep, cpus_per_trial, cal_spec, b.calibration_episodes, b.claim_looks)
        if record is None and not dry_run:
            keep = [s for s in provisional if methods is None or s.method in methods]
            cal, record = calib.run(folder, job, calib.surrogate_configs(keep, ctx), progress=progress)
            info["calibrated_now"] = True  # for finish()'s wall-time line; popped before the manifest
        if record is not None:
            cal = Calibration.from_dict(record["calibration"])
            calibrated = cal.eps
            info["calibration"] = {**cal.to_dict(), "maml_trial_val_acc": record.get("val_acc"),
                                   "seconds": record.get("seconds"), "wall_seconds": record.get("wall_seconds")}
            if "surrogate" in record:
                sur_eps = str(record["surrogate"]["eps"])
                info["calibration"]["surrogate"] = dict(record["surrogate"])
    table_eps = plan(data, dataset, budget, user_eps, calibrated, sur_eps)
    grid_shots = sorted({int(k) for t in data["tables"] for k in as_list(t.get("k_shot", 1))})
    dropped = [k for k in grid_shots if not b.keeps_shot(k)]
    if dropped:
        info["dropped_shots"] = dropped
        if progress or dry_run:
            print(f"budget {budget}: {', '.join(map(str, dropped))}-shot trials left out "
                  f"(--budget paper runs every shot)", file=sys.stderr)
    specs = expand(name, data, b, dataset=dataset, seed=seed, methods=methods, table_eps=table_eps)
    if record is not None and job is not None and not dry_run:
        calib.hand_over(folder, record, job, specs, ctx)
    info["table_eps"] = {k: v.to_dict() for k, v in table_eps.items()}
    # the calibration counts where this run does it (or a dry run's would); a cached one costs nothing
    cal_spec = calib.calibration_spec(specs) if job is not None and (record is None or info.get("calibrated_now")) else None
    info["estimate_seconds"] = estimate_of(specs, cpus_per_trial, cal_spec, b.calibration_episodes).seconds
    if dry_run or (progress and not info.get("calibrated_now")):  # (a calibrating run said it before calibrating)
        say_estimate(specs, cpus_per_trial, cal_spec, b.calibration_episodes, b.claim_looks)
    if progress or dry_run:
        for tname, te in table_eps.items():
            if te.source == "grid":
                continue
            what = ", ".join(te.eps)
            why = {"paper": f"the papers' ε on {dataset}", "user": "--eps",
                   "calibrated": (f"calibrated on {dataset}" if calibrated else
                                  "calibrated when the sweep starts (listed as eps*)")}[te.source]
            if te.source == "calibrated" and te.rule == "surrogate":
                why += (f": the first of ε*·(1 … 2) at which MAML loses ≥ {SURROGATE_DROP:g} points to the "
                        "surrogate's FGSM; ADML and MAML-AD train at it")
            print(f"ε of table {tname}: {what} ({why})", file=sys.stderr)
        if any(te.eps == (PENDING,) for te in table_eps.values()):
            print(f"trial ids: those of trials at {PENDING} are provisional (ε is part of a trial's identity); the run "
                  "lists its own once ε is calibrated, and a dry run of a folder holding that calibration lists the "
                  "run's ids", file=sys.stderr)
    return specs, info


def sweep_dir(name: str, output: str | None, storage: str | None) -> str:
    """The sweep's folder: ``--output``, else ``<storage>/<name>``, else ``results/<name>``."""
    if output:
        return output
    root = storage or "results"
    return root.rstrip("/") + "/" + name


def resumed_specs(folder: str) -> tuple[str, list[TrialSpec], dict[str, Any]]:
    """The trials of the sweep recorded in ``folder`` (``--resume``).

    Raises:
        ConfigError: no sweep was started there.
    """
    manifest = Ledger(folder).read_manifest()
    if manifest is None:
        raise ConfigError(f"nothing to resume: no sweep.json in {folder}")
    specs = [TrialSpec.from_dict(t) for t in manifest["trials"]]
    return str(manifest.get("name", "sweep")), specs, manifest


def estimate_of(specs: Sequence[TrialSpec], cpus_per_trial: float | None, calibration: TrialSpec | None = None,
                calibration_episodes: int = 20) -> Any:
    """The sweep's estimated wall time on this machine (:mod:`advmeta.tune.estimate`)."""
    from advmeta.tune.estimate import estimate

    slots = max(1, int((os.cpu_count() or 1) // max(1.0, float(cpus_per_trial or 1))))
    return estimate(specs, slots, calibration, calibration_episodes)


def say_estimate(specs: Sequence[TrialSpec], cpus_per_trial: float | None, calibration: TrialSpec | None = None,
                 calibration_episodes: int = 20, looks: int = 1) -> None:
    """Print the estimate (stderr), and a warning when the sweep has many trials. ``looks``: the
    claims' planned looks (their further blocks, after the trials, are not in the estimate)."""
    from advmeta.tune.estimate import TOO_MANY

    text = estimate_of(specs, cpus_per_trial, calibration, calibration_episodes).text(os.cpu_count() or 1)
    if looks > 1:
        text += (f"; not in it: up to {looks - 1} further block(s) of episodes for the claims still undecided "
                 "after the trials")
    print(f"estimate: {text}", file=sys.stderr)
    if len(specs) > TOO_MANY:
        print(f"warning: {len(specs)} trials (more than {TOO_MANY}); narrow the ranges or lists, or use --samples with "
              "--search random, if that is not what you meant", file=sys.stderr)


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


def check_episodes(specs: Sequence[TrialSpec], sources: Sequence[str],
                   recorded: dict[str, str] | None = None) -> dict[str, str]:
    """``--episodes``: every trial's test evaluation has a manifest of its dataset and shape.

    Args:
        specs: the sweep's trials.
        sources: manifest files or built-in names.
        recorded: on ``--resume``, the hashes the sweep started with (a changed file is an error).

    Returns:
        Each source's hash (recorded in ``sweep.json``); empty without sources.

    Raises:
        ConfigError: an unreadable manifest, a trial whose dataset and shape no manifest has, or
            (resume) a manifest that changed. Trials of families without few-shot episodes (L2L,
            GAIL) are left as they are (said on stderr).
    """
    from advmeta.data.manifest import read_manifest
    from advmeta.tune.family_meta import episodes_kwargs
    from advmeta.tune.families import RunContext

    if not sources:
        return {}
    hashes = {}
    for s in sources:
        m = read_manifest(s)
        if recorded is not None and recorded.get(s) != m.hash:
            raise ConfigError(f"--resume: the episodes manifest {s} is not the one the sweep started with "
                              f"(sha256 {str(recorded.get(s))[:16]}…, now {m.hash[:16]}…)")
        hashes[s] = m.hash
    ctx = RunContext(sweep_dir="", episodes=tuple(sources))
    used: dict[str, int] = {}
    other = sorted({f"{s.method} ({s.family})" for s in specs if s.family != "meta"})
    if other:
        print(f"episodes: not episodic, --episodes does not apply to: {', '.join(other)}", file=sys.stderr)
    for spec in specs:
        if spec.family != "meta":
            continue
        for split in sorted({str(ev.get("split", "test")) for ev in spec.evals}):
            fitting = episodes_kwargs(spec, ctx, split, 1).get("episodes")
            if fitting is not None:
                used[fitting.origin] = used.get(fitting.origin, 0) + 1
    for origin, n in used.items():
        m = read_manifest(origin)
        print(f"episodes: {n} trial evaluation(s) on {origin} ({m.describe()}, sha256 {m.hash[:16]}…); "
              "no surrogate banks (they hold the seed's episodes)", file=sys.stderr)
    return hashes


def exit_code(outcome: SweepOutcome) -> int:
    """0 when every trial finished, 1 when some failed, 130 when the sweep was interrupted."""
    if outcome.pending:
        return 130
    return 1 if outcome.failed else 0
