"""``advmeta tune METHOD --field VALUES …``: a search over any hyper-parameter of one learner."""

from __future__ import annotations

from typing import Optional

import typer

from advmeta.cli import _options as opt
from advmeta.errors import ConfigError


def tune_command(
    ctx: typer.Context,
    method: str = typer.Argument(..., help="Learner (maml, aq, tafl, …) or L2L trainer."),
    budget: str = opt.BUDGET,
    search: str = typer.Option("grid", "--search", help="grid (every combination) | random (--samples draws)."),
    samples: int = typer.Option(1, "--samples", help="Random draws, or seeds per grid point."),
    scheduler: str = typer.Option("none", "--scheduler", help="none | asha (early stopping on --metric)."),
    metric: str = typer.Option("val_acc", "--metric", help="Training metric ASHA compares."),
    test_eps: Optional[str] = typer.Option(None, "--test-eps", help="ε of the evaluation (list/range; default: the training ε tried)."),
    attacks: str = typer.Option("pgd", "--attacks", help="White-box attacks of the evaluation (comma-separated)."),
    n_way: int = typer.Option(5, "--n-way", help="N of N-way."),
    k_shot: int = typer.Option(1, "--k-shot", help="K of K-shot."),
    dataset: Optional[str] = opt.DATASET,
    data_root: Optional[str] = opt.DATA_ROOT,
    output: Optional[str] = opt.output_option("tune-<method>"),
    storage: Optional[str] = opt.STORAGE,
    seed: int = opt.SEED,
    cpus_per_trial: Optional[float] = opt.CPUS_PER_TRIAL,
    gpus_per_trial: Optional[float] = opt.GPUS_PER_TRIAL,
    address: Optional[str] = opt.ADDRESS,
    num_cpus: Optional[int] = opt.NUM_CPUS,
    max_failures: int = opt.MAX_FAILURES,
    resume: bool = opt.RESUME,
    device: str = opt.DEVICE,
    report: bool = opt.REPORT,
    params: bool = typer.Option(False, "--params", help="List the method's hyper-parameters with the values they "
                                "take on --dataset at --budget, and exit."),
    dry_run: bool = opt.DRY_RUN,
    quiet: bool = opt.QUIET,
    logger: Optional[list[str]] = opt.LOGGER,
) -> None:
    """Search hyper-parameters of METHOD, e.g. advmeta tune tafl --gamma 0:5 --k 0.1,1,10.

    Every field of the method's Config is an option (--params lists them with the values they take):
    a list a,b,c; a range lo:hi (step 1 in a grid, continuous in a random search); a range lo:hi:step.
    ε also as k/255, e.g. --eps 2/255:8/255:2/255 (--eps names the training ε).
    """
    from advmeta.ranges import Kind, as_list, parse_values
    from advmeta.tune.budgets import get_budget
    from advmeta.cli._command import (begin, estimate_of, finish, list_trials, resolve_dataset, resumed_specs,
                                      say_estimate, sweep_dir)
    from advmeta.tune.families import family_of, get_family
    from advmeta.tune.loggers import check_loggers
    from advmeta.tune.space import describe_fields, parse_overrides, tune_trials

    family_of(method)  # an unknown method is an error before anything else
    opt.check_run_options(device=device, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                          num_cpus=num_cpus, max_failures=max_failures, seed=seed)
    loggers = tuple(check_loggers(logger or []))  # a missing package: one line, exit 2, before any work
    if k_shot < 1 or n_way < 2:
        raise ConfigError(f"--k-shot must be >= 1 and --n-way >= 2, got {k_shot} and {n_way}")
    if params:  # the values a trial on the dataset runs with (its per-dataset defaults shown as such)
        on = resolve_dataset(dataset, data_root) if get_family(family_of(method)).uses_dataset(method) else None
        for line in describe_fields(method, on, get_budget(budget, on)):
            typer.echo(line)
        return
    overrides = parse_overrides(method, ctx.args)
    if not dry_run:
        opt.check_cluster(address, gpus_per_trial)  # a dead --address, GPUs on a machine without one
    get_budget(budget)  # a bad budget is an error before anything else happens
    name = f"tune-{method}"
    folder = sweep_dir(name, output, storage)
    if resume:
        name, specs, manifest = resumed_specs(folder)
        if manifest.get("method", method) != method:
            raise ConfigError(f"--resume: {folder} holds a search over {manifest.get('method')}, not {method}")
        opt.check_resume(ctx, manifest, {"budget": "budget", "seed": "seed", "dataset": "dataset", "search": "search",
                                         "samples": "samples"},
                         changing=("test_eps", "attacks", "n_way", "k_shot"), extra=ctx.args)
        keep = ("method", "budget", "dataset", "seed", "search", "samples")
        info: dict[str, object] = {**{k: manifest[k] for k in keep if k in manifest}, "resumed": True}
    else:
        if not overrides and search == "grid" and samples == 1:
            typer.echo("note: no hyper-parameter given; running the defaults once "
                       f"(see `advmeta tune {method} --params`)", err=True)
        eps = as_list(parse_values(test_eps, Kind.EPS, "--test-eps")) if test_eps else None
        from advmeta.tune.validate import check_eps_value

        for e in eps or []:
            check_eps_value(e, "--test-eps")
        simulated = not get_family(family_of(method)).uses_dataset(method)  # GAIL: no dataset chosen or announced
        ds = "none" if simulated and dataset in (None, "auto") else resolve_dataset(dataset, data_root)
        bud = get_budget(budget, ds)
        specs = tune_trials(method, overrides, bud, dataset=ds, seed=seed, n_way=n_way, k_shot=k_shot,
                            search=search, samples=samples, test_eps=eps,
                            attacks=[a.strip() for a in attacks.split(",") if a.strip()], sweep=name)
        from advmeta.tune.validate import check_episode_shapes

        check_episode_shapes(specs, data_root)  # --n-way 5000: an error now, not a failed trial
        info = {"method": method, "budget": budget, "dataset": ds, "seed": seed, "search": search,
                "samples": samples}
    from advmeta.lock import folder_lock

    info["estimate_seconds"] = estimate_of(specs, cpus_per_trial).seconds
    if dry_run or not quiet:
        say_estimate(specs, cpus_per_trial)
    with folder_lock(folder, enabled=not dry_run):  # a second run on this folder exits 2 naming this one
        if dry_run:
            list_trials(specs, folder, lambda s: s.label)
            return
        from advmeta.tune.runner import SweepOptions, run_sweep

        run_info, previous = begin(folder, info)
        outcome = run_sweep(name, specs, folder, SweepOptions(
            address=address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, max_failures=max_failures,
            num_cpus=num_cpus, data_root=data_root, device=device, scheduler=scheduler, metric=metric,
            progress=not quiet, loggers=loggers), run_info)
        code = finish(name, folder, outcome, run_info["started_at"], previous, report=report)  # the report inside the lock
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``advmeta tune``."""
    app.command("tune", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(tune_command)
