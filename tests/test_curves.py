"""Learning curves of every trainer: the rows, their schema, and that logging them changes no number."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from advmeta.results import CURVE_COLUMNS, to_frame
from advmeta.train import TrainConfig, curve_every, train

SMALL = dict(dataset="glyphs", n_way=3, k_shot=1, q_query=2, meta_batch=2, width=8, val_every=3, val_episodes=3,
             checkpoint_every=3, device="cpu", surrogate_steps=3)


def small(method: str, tmp_path: Path, **kw: object) -> TrainConfig:
    return TrainConfig(method=method, hparams={"inner_steps": 1, "test_inner_steps": 1, **dict(kw.pop("hparams", {}))},  # type: ignore[call-overload]
                       **{**SMALL, "cache_dir": str(tmp_path / "cache"), **kw})


def test_curve_every_divides_the_validation_period() -> None:
    assert curve_every(600, 200) == 20 and curve_every(60000, 1000) == 100 and curve_every(6, 3) == 1
    assert curve_every(100, 0) == 2 and curve_every(10, 0) == 1
    for val_every in range(1, 400):
        every = curve_every(10_000, val_every)
        assert val_every % every == 0 and every <= max(1, val_every // 10)


def test_meta_history_is_a_curve_with_validation_where_validated(tmp_path: Path) -> None:
    _, metrics = train(small("aq", tmp_path, iterations=6, hparams={"train_eps": "16/255"}), tmp_path / "aq",
                       progress=False)
    history = metrics["history"]
    assert [r["iteration"] for r in history] == [1, 2, 3, 4, 5, 6]
    assert [("val_acc" in r) for r in history] == [False, False, True, False, False, True]
    assert all(math.isfinite(r["train_loss"]) and 0 <= r["train_adv_acc"] <= 100 for r in history)
    assert [r["train_seconds"] for r in history] == sorted(r["train_seconds"] for r in history)
    assert metrics["hparams"]["train_eps"] == "16/255"


def test_curve_rows_change_no_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run logging a row every iteration ends with the weights and validation of one that logs
    only at its validations (as before curves): observation only, no random number drawn."""
    cfg = small("aq", tmp_path, iterations=4, val_every=2, checkpoint_every=2, hparams={"train_eps": "16/255"})
    path, fine = train(cfg, tmp_path / "fine", progress=False)
    monkeypatch.setattr("advmeta.train.curve_every", lambda iterations, val_every: val_every)
    ref_path, coarse = train(cfg, tmp_path / "coarse", progress=False)
    assert len(fine["history"]) == 4 and len(coarse["history"]) == 2
    assert fine["val_acc"] == coarse["val_acc"] and fine["val_acc_ci95"] == coarse["val_acc_ci95"]
    a, b = (torch.load(p, weights_only=False)["state"]["model"] for p in (path, ref_path))
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_meta_and_l2l_curve_rows_fit_the_schema_beside_gail() -> None:
    from types import SimpleNamespace

    from advmeta.families.l2l import curve_metrics as l2l_metrics
    from advmeta.families.meta import curve_rows

    cfg = SimpleNamespace(method="aq", dataset="omniglot", k_shot=1, seed=0)
    meta = curve_rows([{"iteration": 2, "train_loss": 1.5, "train_adv_acc": 40.0, "train_seconds": 1.0},
                       {"iteration": 4, "train_loss": 1.2, "val_acc": 55.0, "val_acc_ci95": 3.0, "train_seconds": 2.0}],
                      cfg, {"train_eps": "2/255", "inner_lr": 0.4})
    epoch = {"epoch": 1, "lr": 0.1, "train_loss": 2.0, "train_adv_acc": 30.0, "attacker_loss": 1.0, "epoch_seconds": 3.0,
             "val_clean_acc": 50.0, "val_pgd20_acc": 20.0, "train_seconds": 3.0}
    assert l2l_metrics(epoch, plain=False) == {"iteration": 1, "train_loss": 2.0, "train_adv_acc": 30.0, "val_acc": 50.0,
                                               "val_robust_acc": 20.0, "train_seconds": 3.0}
    assert "train_adv_acc" not in l2l_metrics(epoch, plain=True)  # Plain Net trains on clean images
    gail = {"method": "gail", "env": "CartPole-v1", "iteration": 1, "reward": 20.0, "disc_acc": 60.0}
    frame = to_frame([*meta, {"method": "pgm", "dataset": "cifar10", **l2l_metrics(epoch, plain=False)}, gail], "curves")
    assert list(frame.columns[: len(CURVE_COLUMNS)]) == [c.name for c in CURVE_COLUMNS]
    assert frame["val_acc"].isna().tolist() == [True, False, False, True]
    assert frame["train_loss"].notna().tolist() == [True, True, True, False]
    assert str(frame["hp_inner_lr"].dtype) == "float64" and frame.loc[0, "k_shot"] == 1


def test_report_reads_gail_rows_as_reward_curves_and_the_rest_as_training_curves(tmp_path: Path) -> None:
    from advmeta.report_curves import load_curves, load_training_curves
    from advmeta.results import write_parquet_atomic

    rows = [{"trial_id": "a", "method": "maml", "dataset": "glyphs", "iteration": i, "train_loss": 1.0 / i} for i in (1, 2)]
    rows.append({"trial_id": "g", "method": "gail", "env": "CartPole-v1", "iteration": 1, "reward": 20.0})
    write_parquet_atomic(to_frame(rows, "curves"), tmp_path / "curves.parquet")
    assert load_curves(tmp_path)["trial_id"].tolist() == ["g"]
    assert load_training_curves(tmp_path)["trial_id"].tolist() == ["a", "a"]
    assert load_curves(tmp_path / "none").empty and load_training_curves(tmp_path / "none").empty


@pytest.mark.slow
def test_smoke_paper_tables_sweep_has_curves_for_every_trial_and_logs_them(tmp_path: Path, data_root: Path) -> None:
    """``advmeta sweep --budget smoke`` of paper-tables on Omniglot with TensorBoard and MLflow (several
    minutes): every trial that trains has learning-curve rows; the loggers saw every trial."""
    import os
    import subprocess
    import sys

    out = tmp_path / "smoke"
    pytest.importorskip("tensorboard", reason="pip install 'advmeta[tensorboard]' to read the event files")
    pytest.importorskip("mlflow", reason="pip install 'advmeta[mlflow]' to read the MLflow runs")
    proc = subprocess.run([sys.executable, "-m", "advmeta", "sweep", "--grid", "paper-tables", "--budget", "smoke",
                           "--dataset", "omniglot", "--quiet", "--output", str(out), "--logger", "tensorboard",
                           "--logger", "mlflow"], capture_output=True, text=True, timeout=3000,
                          env={**os.environ, "ADVMETA_DATA": str(data_root)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = pd.read_parquet(out / "summary.parquet")
    curves = pd.read_parquet(out / "curves.parquet")
    trained = set(summary.loc[summary["status"] == "ok", "trial_id"])
    assert trained and trained <= set(curves["trial_id"]), trained - set(curves["trial_id"])
    assert curves["train_loss"].notna().all() and curves.groupby("trial_id")["val_acc"].count().min() >= 1
    last = curves.groupby("trial_id")["iteration"].max()
    assert (last == summary.groupby("trial_id")["train_iterations"].max().reindex(last.index)).all()  # to the end
    events = list((out / "ray").glob("run-*/*/events.out.tfevents.*"))
    assert {p.parent.name for p in events} >= trained
    assert (out / "mlruns").is_dir() and (out / "report" / "index.html").is_file()
