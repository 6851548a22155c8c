"""Typer options shared by ``advmeta sweep`` and ``advmeta tune``: one declaration each.

A Typer option is a default value, so one ``OptionInfo`` object can serve several commands;
keeping them here means the two commands cannot drift apart in names, defaults or help.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer

from advmeta.errors import ConfigError

BUDGET = typer.Option("quick", "--budget", "-b", help="smoke (minutes on 2 cores) | quick | paper.")
DATASET = typer.Option(None, "--dataset", help="Few-shot dataset (default: first real one found, else glyphs).")
DATA_ROOT = typer.Option(None, "--data-root", help="Data folder (default: $ADVMETA_DATA, then the user cache).")
STORAGE = typer.Option(None, "--storage", help="Root for results and checkpoints: a path or pyarrow URI (s3://…); default results/.")
SEED = typer.Option(0, "--seed", help="Seed of training, of the test episodes and of a random search.")
CPUS_PER_TRIAL = typer.Option(None, "--cpus-per-trial", help="CPUs per trial (default 1).")
GPUS_PER_TRIAL = typer.Option(None, "--gpus-per-trial", help="GPUs per trial, fractions share a GPU (default: 1 if the cluster has GPUs).")
ADDRESS = typer.Option(None, "--address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local one).")
NUM_CPUS = typer.Option(None, "--num-cpus", help="CPUs of a new local Ray cluster (default: all).")
MAX_FAILURES = typer.Option(1, "--max-failures", help="Retries of a crashed trial from its last checkpoint.")
RESUME = typer.Option(False, "--resume", help="Continue the sweep recorded in the output folder (same trials).")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda.")
REPORT = typer.Option(True, "--report/--no-report", help="Render tables and figures at the end.")
DRY_RUN = typer.Option(False, "--dry-run", help="List the trials and exit.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress line.")
LOGGER = typer.Option(None, "--logger", help="Also log every trial's learning curve and settings to tensorboard | mlflow | "
                      "wandb | csv (repeatable; each an extra: pip install 'advmeta[mlflow]'). See README, Loggers.")


def output_option(default_name: str) -> Any:
    """``--output/-o``, whose help names the command's default folder."""
    return typer.Option(None, "--output", "-o", help=f"Sweep folder (default: <storage>/{default_name}).")


def sweep_dir(name: str, output: str | None, storage: str | None) -> str:
    """The sweep's folder: ``--output``, else ``<storage>/<name>``, else ``results/<name>``."""
    if output:
        return output
    root = storage or "results"
    return root.rstrip("/") + "/" + name


def check_run_options(*, device: str = "auto", cpus_per_trial: float | None = None,
                      gpus_per_trial: float | None = None, num_cpus: int | None = None,
                      max_failures: int = 0, seed: int = 0) -> None:
    """The run options every command shares, checked before any work (a dry run included).

    Raises:
        ConfigError: an unknown device, non-positive CPUs, negative GPUs or retries.
    """
    import re

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(device)):
        raise ConfigError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")
    if cpus_per_trial is not None and not cpus_per_trial > 0:
        raise ConfigError(f"--cpus-per-trial must be > 0, got {cpus_per_trial:g}")
    if gpus_per_trial is not None and not gpus_per_trial >= 0:
        raise ConfigError(f"--gpus-per-trial must be >= 0, got {gpus_per_trial:g}")
    if num_cpus is not None and num_cpus < 1:
        raise ConfigError(f"--num-cpus must be >= 1, got {num_cpus}")
    if max_failures < 0:
        raise ConfigError(f"--max-failures must be >= 0, got {max_failures}")
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")


def check_cluster(address: str | None, gpus: float | None, option: str = "--gpus-per-trial") -> None:
    """Before any work (calibration, banks, Ray's start): a cluster address that does not answer, or
    GPUs asked of a new local cluster on a machine without one — one line each, exit 2.

    Raises:
        ResourceError: naming the address or the option.
    """
    import os

    from advmeta.errors import ResourceError
    from advmeta.tune.session import check_address, precheck_gpus

    try:
        precheck_gpus(gpus, address)
    except ResourceError as err:
        raise ResourceError(str(err).replace("--gpus-per-trial", option)) from None
    joined = address or os.environ.get("RAY_ADDRESS")
    if joined:
        check_address(joined)


def typed(ctx: typer.Context, name: str) -> bool:
    """Whether the user set option ``name`` (on the command line or through its environment
    variable) rather than leaving its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def check_resume(ctx: typer.Context, manifest: dict[str, Any], recorded: dict[str, str],
                 changing: Sequence[str], extra: Sequence[str] = ()) -> None:
    """``--resume`` reruns the trials recorded in the folder: an option the user typed that would
    change them is an error, never silently ignored — an explicit default included.

    Args:
        recorded: option parameter → the manifest key holding the value it was started with; a
            typed value that differs from the record is a clash ("auto" matches any dataset).
        changing: options that change the trials whatever their value (any typed one clashes).
        extra: the hyper-parameter options of ``advmeta tune`` (``--gamma 0:5`` …), all clashes.

    Raises:
        ConfigError: naming each clashing option and what the folder recorded.
    """
    clashes = []
    for param, key in recorded.items():
        value, before = ctx.params.get(param), manifest.get(key)
        if typed(ctx, param) and value != before and not (param == "dataset" and value == "auto"):
            clashes.append(f"--{param.replace('_', '-')} {value} (recorded: {before})")
    clashes += [f"--{param.replace('_', '-')}" for param in changing if typed(ctx, param)]
    clashes += [a for a in extra if a.startswith("--")]
    if clashes:
        raise ConfigError(f"--resume continues the sweep recorded in its folder, which {', '.join(clashes)} would "
                          "change; drop them, or start a new sweep with another --output")
