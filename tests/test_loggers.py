"""``--logger``: a sweep's trials in TensorBoard, MLflow, W&B and CSV files, through Ray Tune's callbacks.

The sweeps here run the toy family (tests/toy_family.py: milliseconds a trial), so these test the
wiring: each backend's files, read back with the backend's own reader, hold every trial with its
settings as parameters and its metrics at the trainer's iterations.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from advmeta.errors import ConfigError
from advmeta.plan.budgets import get_budget
from advmeta.plan.grids import expand
from advmeta.tune.loggers import check_loggers, trial_params
from advmeta.tune.runner import SweepOptions, run_sweep

GRID = {"tables": [{"name": "toy", "methods": ["toy"], "k_shot": [1], "hparams": {"gamma": [0.0, 2.0]},
                    "evals": [{"scenario": "whitebox", "attacks": ["pgd"], "eps": ["2/255"], "support": ["clean"],
                               "query": ["clean", "adv"]}]}]}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[object]:
    """One small local Ray cluster for the module (RAY.md: small object store, quiet)."""
    ray = pytest.importorskip("ray")
    from advmeta.tune.session import quiet_environment

    saved = dict(os.environ)
    quiet_environment(local_cluster=True)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, object_store_memory=512 * 2**20, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    yield ray
    if started:
        ray.shutdown()
    os.environ.clear()
    os.environ.update(saved)


def specs() -> list:  # type: ignore[type-arg]
    return expand("toy", GRID, get_budget("smoke"), dataset="glyphs", seed=0)


def test_unknown_or_missing_logger_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unknown logger; known: tensorboard, mlflow, wandb, csv"):
        check_loggers(["neptune"])
    assert check_loggers(["csv", "CSV", "csv"]) == ["csv"]
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"--logger mlflow needs the mlflow package: pip install 'advmeta\[mlflow\]'"):
        check_loggers(["csv", "mlflow"])


def test_cli_refuses_a_missing_logger_before_anything_runs(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import importlib.util
    import sys

    from advmeta.cli.app import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    for args in (["sweep", "--grid", "tafl", "--dataset", "glyphs"], ["tune", "tafl", "--gamma", "1", "--dataset", "glyphs"]):
        monkeypatch.setattr(sys, "argv", ["advmeta", *args, "--output", str(tmp_path / "x"), "--logger", "wandb"])
        with pytest.raises(SystemExit) as info:
            main()
        err = capsys.readouterr().err.strip().splitlines()
        assert info.value.code == 2 and err == ["error: --logger wandb needs the wandb package: pip install 'advmeta[wandb]'"]
        assert not (tmp_path / "x").exists()  # nothing ran: no folder, no lock, no manifest


def test_trial_params_are_flat_scalars_of_the_spec() -> None:
    spec = specs()[0]
    params = trial_params(spec)
    assert params["id"] == spec.trial_id and params["method"] == "toy" and params["hparams"]["gamma"] in (0.0, 2.0)
    assert params["train"]["k_shot"] == 1 and params["train"]["iterations"] == get_budget("smoke").iterations

    def leaves(d: dict) -> list:  # type: ignore[type-arg]
        return [x for v in d.values() for x in (leaves(v) if isinstance(v, dict) else [v])]

    assert all(isinstance(v, (bool, int, float, str)) for v in leaves(params))


def test_tensorboard_and_mlflow_hold_every_trial(ray_cluster: object, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                            reason="tensorboard is not installed: pip install 'advmeta[tensorboard]'")
    pytest.importorskip("mlflow", reason="mlflow is not installed: pip install 'advmeta[mlflow]'")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    trials = specs()
    out = run_sweep("toy", trials, str(tmp_path), SweepOptions(progress=False, loggers=("tensorboard", "mlflow", "csv")))
    assert out.done == len(trials) == 2
    iterations = get_budget("smoke").iterations
    reported = list(range(get_budget("smoke").checkpoint_every, iterations + 1, get_budget("smoke").checkpoint_every))
    for spec in trials:
        folder = next((tmp_path / "ray").glob(f"run-*/{spec.trial_id}"))
        acc = event_accumulator.EventAccumulator(str(folder))
        acc.Reload()
        steps = sorted({e.step for e in acc.Scalars("ray/tune/val_acc")})
        assert steps == reported  # at the trainer's own iterations (timesteps_total), not Tune's report count
        assert (folder / "progress.csv").is_file()
    client = MlflowClient(f"file://{tmp_path / 'mlruns'}")
    experiment = client.get_experiment_by_name("toy")
    assert experiment is not None
    runs = {r.data.params["trial/id"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {s.trial_id for s in trials}
    for spec in trials:
        run = runs[spec.trial_id]
        assert run.info.run_name == f"{spec.label} {spec.trial_id}" and run.info.status == "FINISHED"
        assert run.data.params["trial/method"] == "toy" and float(run.data.params["trial/hparams/gamma"]) == spec.hparams["gamma"]
        assert run.data.params["trial/train/k_shot"] == "1" and run.data.params["trial/budget"] == "smoke"
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert sorted({m.step for m in history}) == reported


@pytest.mark.slow
def test_wandb_offline_writes_one_run_per_trial(ray_cluster: object, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B offline (no account, no network; ~30 s: a logging actor per trial starts W&B's service)."""
    pytest.importorskip("wandb", reason="wandb is not installed: pip install 'advmeta[wandb]'")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    trials = specs()
    out = run_sweep("toy", trials, str(tmp_path), SweepOptions(progress=False, loggers=("wandb",)))
    assert out.done == 2
    runs = sorted((tmp_path / "wandb").glob("offline-run-*/*.wandb"))
    assert len(runs) == 2
    data = b"".join(p.read_bytes() for p in runs)
    for spec in trials:
        assert spec.label.encode() in data  # the run's name
    assert b"val_acc" in data and b"gamma" in data
