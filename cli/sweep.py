"""``advmeta sweep``: run a grid of trials on Ray Tune (a laptop or a cluster), resumably."""

from __future__ import annotations

from typing import Any, Optional

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
    eps: Optional[str] = typer.Option(None, "--eps", help="ε of every table: a list a,b or a range lo:hi:step, each k/255 or a float (the first is the training ε), "
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
    from advmeta.plan.budgets import get_budget
    from advmeta.plan.grids import GridRequest, grid_names, load_grid
    from advmeta.plan.sweeps import check_episodes, resume_plan
    from advmeta.tune.loggers import check_loggers
    from advmeta.tune.runner import SweepOptions, run

    if list_grids:
        for name in grid_names():
            desc = " ".join(str(load_grid(name)[1].get("description", "")).split())
            typer.echo(f"{name}: {desc}")
        return
    get_budget(budget)  # a bad budget is an error before anything else happens
    opt.check_run_options(device=device, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                          num_cpus=num_cpus, max_failures=max_failures, seed=seed)
    loggers = tuple(check_loggers(logger or []))  # a missing package: one line, exit 2, before any work
    if not dry_run:
        opt.check_cluster(address, gpus_per_trial)  # a dead --address, GPUs on a machine without one
    name, _ = load_grid(grid)  # the folder's default name; the request is parsed when it is planned
    request = GridRequest(grid=grid, budget=budget, dataset=dataset, seed=seed,
                          methods=tuple(m.strip() for m in methods.split(",")) if methods is not None else None,
                          eps=eps, episodes=tuple(e.strip() for e in episodes.split(",")) if episodes else (),
                          data_root=data_root, device=device, cpus_per_trial=cpus_per_trial)
    folder = opt.sweep_dir(name, output, storage)

    def resumed() -> Any:
        plan = resume_plan(folder, ("grid", "method", "budget", "dataset", "seed", "table_eps", "calibration",
                                    "episodes"))
        if "grid" not in plan.manifest and plan.manifest.get("method"):
            m = plan.manifest["method"]
            raise ConfigError(f"--resume: {folder} holds an `advmeta tune {m}` search, not a grid sweep; continue it "
                              f"with: advmeta tune {m} --resume --output {folder}")
        opt.check_resume(ctx, plan.manifest, {"grid": "grid", "budget": "budget", "seed": "seed", "dataset": "dataset"},
                         changing=("methods", "eps", "episodes"))
        recorded = plan.manifest.get("episodes") or {}
        check_episodes(plan.trials, list(recorded), recorded)
        return plan

    options = SweepOptions(
        address=address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, max_failures=max_failures,
        num_cpus=num_cpus, data_root=data_root, device=device, progress=not quiet,
        banks={"test": banks} if banks else {}, make_banks=make_banks, loggers=loggers)
    # the request goes to the one road as typed: planned there (holding the folder's lock), then run
    raise typer.Exit(run(resumed if resume else request, folder, options, dry_run=dry_run, report=report))


def register(app: typer.Typer) -> None:
    """Add ``advmeta sweep``."""
    app.command("sweep")(sweep)
