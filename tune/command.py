"""What ``advmeta sweep`` and ``advmeta tune`` share after parsing: paths, the run, the summary.

Kept out of the Typer modules so that it can be tested and reused without a command line.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from advmeta.errors import ConfigError
from advmeta.tune.ledger import Ledger
from advmeta.tune.runner import SweepOptions, SweepOutcome, run_sweep
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


def execute(name: str, specs: Sequence[TrialSpec], folder: str, opts: SweepOptions, info: dict[str, Any],
            report: bool = True, quiet: bool = False) -> SweepOutcome:
    """Run the sweep, write the report, print the summary lines; the caller maps the exit code."""
    info = {**info, "command": shlex.join(["advmeta", *sys.argv[1:]]), "cwd": os.getcwd()}
    outcome = run_sweep(name, specs, folder, opts, info)
    lines = [f"{name}: {outcome.done}/{outcome.total} trials done"
             + (f", {outcome.failed} failed" if outcome.failed else "")
             + (f", {outcome.stopped} stopped early" if outcome.stopped else "")
             + (f", {outcome.pending} not run (interrupted: re-run the same command to continue)"
                if outcome.pending else "")
             + f" in {outcome.wall_seconds:.0f} s",
             f"results: {folder}/summary.parquet ({len(outcome.summary)} rows), "
             f"{folder}/episodes.parquet ({len(outcome.episodes)} rows)"]
    if outcome.failed:
        errs = outcome.summary[outcome.summary["status"] == "error"][["method", "error"]].drop_duplicates()
        for method, err in errs.head(5).itertuples(index=False):
            lines.append(f"failed: {method}: {str(err)[:200]}")
    if report and len(outcome.summary) and "://" not in folder:
        from advmeta.report import write_report

        paths = write_report(folder)
        lines.append(f"report: {paths['markdown']} ({len(paths['figures'])} figures)")
    if not quiet:
        for line in lines:
            print(line)
    return outcome


def exit_code(outcome: SweepOutcome) -> int:
    """0 when every trial finished, 1 when some failed, 130 when the sweep was interrupted."""
    if outcome.pending:
        return 130
    return 1 if outcome.failed else 0
