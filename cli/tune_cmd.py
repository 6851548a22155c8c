"""``advmeta tune METHOD --field VALUES …``: a search over any hyper-parameter of one learner."""

from __future__ import annotations

from typing import Any, Optional

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
    from advmeta.plan.budgets import get_budget
    from advmeta.plan.space import SearchRequest
    from advmeta.plan.sweeps import resolve_dataset, resume_plan
    from advmeta.tune.loggers import check_loggers
    from advmeta.tune.runner import SweepOptions, run

    opt.check_run_options(device=device, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                          num_cpus=num_cpus, max_failures=max_failures, seed=seed)
    loggers = tuple(check_loggers(logger or []))  # a missing package: one line, exit 2, before any work
    if params:  # the values a trial on the dataset runs with (its per-dataset defaults shown as such)
        from advmeta.families import resolve
        from advmeta.plan.space import describe_fields

        ref = resolve(method)
        on = resolve_dataset(dataset, data_root) if ref.family.uses_dataset(method) else None
        for line in describe_fields(ref, on, get_budget(budget, on)):
            typer.echo(line)
        return
    request = SearchRequest(method=method, options=tuple(ctx.args), budget=budget, dataset=dataset, seed=seed,
                            n_way=n_way, k_shot=k_shot, search=search, samples=samples, test_eps=test_eps,
                            attacks=attacks, data_root=data_root, cpus_per_trial=cpus_per_trial)
    if not dry_run:
        opt.check_cluster(address, gpus_per_trial)  # a dead --address, GPUs on a machine without one
    folder = opt.sweep_dir(f"tune-{method}", output, storage)

    def resumed() -> Any:
        plan = resume_plan(folder, ("method", "budget", "dataset", "seed", "search", "samples", "estimate_seconds"))
        if plan.manifest.get("method", method) != method:
            raise ConfigError(f"--resume: {folder} holds a search over {plan.manifest.get('method')}, not {method}")
        opt.check_resume(ctx, plan.manifest, {"budget": "budget", "seed": "seed", "dataset": "dataset",
                                              "search": "search", "samples": "samples"},
                         changing=("test_eps", "attacks", "n_way", "k_shot"), extra=ctx.args)
        return plan

    options = SweepOptions(
        address=address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, max_failures=max_failures,
        num_cpus=num_cpus, data_root=data_root, device=device, scheduler=scheduler, metric=metric,
        progress=not quiet, loggers=loggers)
    # the request goes to the one road as typed: planned there (before the folder is locked), then run
    raise typer.Exit(run(resumed if resume else request, folder, options, dry_run=dry_run, report=report))


def register(app: typer.Typer) -> None:
    """Add ``advmeta tune``."""
    app.command("tune", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(tune_command)
