"""``advmeta sweep``: run a grid of trials on Ray Tune (a laptop or a cluster), resumably."""

from __future__ import annotations

import time
from typing import Optional

import typer

from advmeta.errors import ConfigError

from advmeta.cli import _options as opt


def sweep(
    ctx: typer.Context,
    grid: str = typer.Option("paper-tables", "--grid", "-g", help="Grid name (see --list) or path to a .toml grid."),
    budget: str = opt.BUDGET,
    dataset: Optional[str] = opt.DATASET,
    data_root: Optional[str] = opt.DATA_ROOT,
    output: Optional[str] = opt.output_option("<grid>"),
    storage: Optional[str] = opt.STORAGE,
    seed: int = opt.SEED,
    methods: Optional[str] = typer.Option(None, "--methods", help="Only these methods (comma-separated)."),
    eps: Optional[str] = typer.Option(None, "--eps", help="ε of every table (k/255, list a,b: first is the training ε) "
                                      "instead of the papers' (their datasets) or the calibrated one (others)."),
    cpus_per_trial: Optional[float] = opt.CPUS_PER_TRIAL,
    gpus_per_trial: Optional[float] = opt.GPUS_PER_TRIAL,
    address: Optional[str] = opt.ADDRESS,
    num_cpus: Optional[int] = opt.NUM_CPUS,
    max_failures: int = opt.MAX_FAILURES,
    resume: bool = opt.RESUME,
    banks: Optional[str] = typer.Option(None, "--banks", help="Folder of episode banks (advmeta episodes); default <output>/banks."),
    make_banks: bool = typer.Option(True, "--make-banks/--no-banks", help="Make missing surrogate-attacked test banks with Ray Data first (else each trial attacks its own episodes)."),
    episodes: Optional[str] = typer.Option(None, "--episodes", help="Standard test episodes: manifest files or built-in names, comma-separated (advmeta episodes export); each trial's test evaluation uses the one of its dataset and shape, every row records its hash."),
    device: str = opt.DEVICE,
    report: bool = opt.REPORT,
    dry_run: bool = opt.DRY_RUN,
    list_grids: bool = typer.Option(False, "--list", help="List the grids and exit."),
    quiet: bool = opt.QUIET,
    logger: Optional[list[str]] = opt.LOGGER,
) -> None:
    """Run every trial of a grid (train, evaluate, record) and write Parquet results and a report.

    Re-running the same command (or --resume) continues an interrupted sweep: finished trials
    are never recomputed, unfinished ones resume from their last checkpoint.
    """
    from advmeta.lock import folder_lock
    from advmeta.tune.budgets import get_budget
    from advmeta.tune.loggers import check_loggers
    from advmeta.cli._command import (begin, check_episodes, finish, list_trials, plan_sweep, resolve_dataset,
                                      resumed_specs, sweep_dir)
    from advmeta.tune.grids import grid_names, load_grid

    if list_grids:
        for name in grid_names():
            desc = " ".join(str(load_grid(name)[1].get("description", "")).split())
            typer.echo(f"{name}: {desc}")
        return
    t_start = time.time()
    get_budget(budget)  # a bad budget is an error before anything else happens
    opt.check_run_options(device=device, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                          num_cpus=num_cpus, max_failures=max_failures, seed=seed)
    loggers = tuple(check_loggers(logger or []))  # a missing package: one line, exit 2, before any work
    if not dry_run:
        opt.check_cluster(address, gpus_per_trial)  # a dead --address, GPUs on a machine without one
    from advmeta.tune.validate import check_eps_value

    for e in (eps or "").split(","):
        if e.strip():
            check_eps_value(e.strip(), "--eps")  # malformed, or above the largest ε advmeta accepts
    name, data = load_grid(grid)
    folder = sweep_dir(name, output, storage)
    with folder_lock(folder, enabled=not dry_run):  # a second run on this folder exits 2 naming this one
        if resume:
            name, specs, manifest = resumed_specs(folder)
            if "grid" not in manifest and manifest.get("method"):
                raise ConfigError(f"--resume: {folder} holds an `advmeta tune {manifest['method']}` search, not a grid "
                                  f"sweep; continue it with: advmeta tune {manifest['method']} --resume --output {folder}")
            opt.check_resume(ctx, manifest, {"grid": "grid", "budget": "budget", "seed": "seed", "dataset": "dataset"},
                             changing=("methods", "eps", "episodes"))
            info = {k: manifest.get(k) for k in ("grid", "budget", "dataset", "seed", "table_eps", "calibration",
                                                 "episodes")}
            sources = check_episodes(specs, list(manifest.get("episodes") or {}), manifest.get("episodes") or {})
        else:
            from advmeta.tune.grids import uses_data

            # A grid of simulators (GAIL) reads no dataset: none is chosen or announced.
            ds = resolve_dataset(dataset, data_root) if uses_data(data) or dataset not in (None, "auto") else "none"
            wanted = [m.strip() for m in methods.split(",")] if methods is not None else None
            if wanted is not None and not all(wanted):
                raise ConfigError(f"--methods {methods!r}: empty method name; give a comma-separated list, e.g. maml,adml")
            from advmeta.tune.families import family_of

            for m in wanted or []:
                family_of(m)  # an unknown method is an error, not an empty sweep
            user_eps = [e.strip() for e in eps.split(",")] if eps is not None else None
            specs, info = plan_sweep(name, data, budget, ds, seed, wanted, user_eps, folder, data_root=data_root,
                                     device=device, cpus_per_trial=cpus_per_trial, dry_run=dry_run, progress=not quiet)
            sources = check_episodes(specs, [e.strip() for e in episodes.split(",")] if episodes else [])
            info = {"grid": grid, "budget": budget, "dataset": ds, "seed": seed, **info}
            if sources:
                info["episodes"] = sources
        info["started_at"] = t_start
        if dry_run:
            list_trials(specs, folder, lambda s: f"{s.label}  [{', '.join(s.table)}]")
            return
        from advmeta.tune.runner import SweepOptions, run_sweep

        calibrated = bool(info.pop("calibrated_now", False))
        run_info, previous = begin(folder, info)
        outcome = run_sweep(name, specs, folder, SweepOptions(
            address=address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, max_failures=max_failures,
            num_cpus=num_cpus, data_root=data_root, device=device, progress=not quiet,
            banks={"test": banks} if banks and not sources else {}, make_banks=make_banks and not sources,
            episodes=tuple(sources), loggers=loggers, claim_looks=get_budget(budget).claim_looks), run_info)
        code = finish(name, folder, outcome, run_info["started_at"], previous, report=report,  # the report inside the lock
                      calibrated=calibrated)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``advmeta sweep``."""
    app.command("sweep")(sweep)
