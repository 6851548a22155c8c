"""End to end (slow): a small grid through ε calibration, the trials and the claims table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

GRID = Path(__file__).parent / "grids" / "mini-claims.toml"


def _sweep(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "ADVMETA_NO_DOWNLOAD": "1"}
    cmd = [sys.executable, "-c", "from advmeta.cli.app import main; main()", "sweep", "--grid", str(GRID), "--dataset", "glyphs", "--budget",
           "smoke", "--output", str(out), "--num-cpus", "2", "--device", "cpu", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_small_grid_calibrates_then_judges_claims(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    dry = _sweep(out, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "calibrated when the sweep starts" in dry.stderr and "eps*" in dry.stdout
    run = _sweep(out)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "calibrated ε* = " in run.stderr and "claims:" in run.stdout and "wall time" in run.stdout
    cal = json.loads((out / "calibration.json").read_text())
    manifest = json.loads((out / "sweep.json").read_text())
    eps_star = cal["calibration"]["eps"]
    assert manifest["table_eps"]["tafl"] == {"eps": [eps_star], "source": "calibrated", "rule": "pgd",
                                             "train_eps": eps_star}
    # ADML's table: the surrogate rule's ε (one of ε*·(1 … 2)), at which ADML trains.
    sur = cal["surrogate"]
    assert len(sur["curve"]) == 5 and sur["curve"][0]["eps"] == eps_star
    assert manifest["table_eps"]["adml"]["eps"] == [sur["eps"]] and manifest["table_eps"]["adml"]["rule"] == "surrogate"
    assert manifest["calibration"]["surrogate"]["eps"] == sur["eps"]
    assert "surrogate table ε = " in run.stderr
    assert manifest["wall_seconds"] > 0
    summary = pd.read_parquet(out / "summary.parquet")
    from advmeta.results import duplicate_keys

    assert duplicate_keys(summary).empty and duplicate_keys(pd.read_parquet(out / "episodes.parquet"), "episodes").empty
    attacked = summary[summary["eps"] > 0]
    assert (attacked["eps_source"] == "calibrated").all()
    assert (attacked.loc[attacked["scenario"] == "whitebox", "eps_str"] == eps_star).all()
    assert (attacked.loc[attacked["scenario"] == "surrogate", "eps_str"] == sur["eps"]).all()
    aq = summary[summary["method"] == "aq"]
    assert json.loads(aq["hparams"].iloc[0])["train_eps"] == eps_star  # trained at the calibrated ε
    adml = summary[summary["method"] == "adml"]
    assert json.loads(adml["hparams"].iloc[0])["train_eps"] == sur["eps"]  # ... ADML at its table's
    claims = pd.read_parquet(out / "report" / "claims.parquet")
    assert set(claims["verdict"]) <= {"inconclusive", "unreliable"}  # smoke: nothing is judged
    collapse = claims[claims["claim_id"].str.contains("collapse")].iloc[0]
    last = summary[(summary["method"] == "maml") & (summary["attack"] == "pgd")]
    assert collapse["value"] == pytest.approx(last.loc[last["finetune_step"].idxmax(), "acc"])
    # The same command again: nothing is recomputed, the same ε and the same claims.
    again = _sweep(out)
    assert again.returncode == 0, again.stderr
    assert "calibrating" not in again.stderr
    pd.testing.assert_frame_equal(claims, pd.read_parquet(out / "report" / "claims.parquet"))


@pytest.mark.slow
def test_paper_tables_smoke_rows_have_unique_keys(tmp_path: Path) -> None:
    """Every table of paper-tables (their PGD and R-MAML's PGD-10 side by side): the documented keys hold."""
    from advmeta.results import EPISODE_KEY, SUMMARY_KEY, duplicate_keys

    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "ADVMETA_NO_DOWNLOAD": "1"}
    out = tmp_path / "pt"
    cmd = [sys.executable, "-m", "advmeta", "sweep", "--grid", "paper-tables", "--dataset", "glyphs", "--budget", "smoke",
           "--output", str(out), "--num-cpus", "2", "--device", "cpu", "--no-report", "--quiet"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = pd.read_parquet(out / "summary.parquet")
    episodes = pd.read_parquet(out / "episodes.parquet")
    assert set(SUMMARY_KEY) <= set(summary.columns) and set(EPISODE_KEY) <= set(episodes.columns)
    assert duplicate_keys(summary).empty, duplicate_keys(summary)[list(SUMMARY_KEY)].head()
    assert duplicate_keys(episodes, "episodes").empty
    maml_pgd = summary[(summary["attack"] == "pgd") & (summary["method"] == "maml")]
    pgd = maml_pgd[maml_pgd["scenario"] == "whitebox"]  # the tables' PGD settings side by side, one row each
    assert pgd["attack_params"].nunique() >= 1 and len(pgd) == pgd["attack_params"].nunique() * pgd["eps_str"].nunique()
    # PGD through the adaptation (the adaptive table): one row per scenario and ε
    adaptive = maml_pgd[maml_pgd["scenario"] != "whitebox"]
    assert set(adaptive["scenario"]) == {"support", "support+query"}
    assert len(adaptive) == adaptive["scenario"].nunique() * adaptive["eps_str"].nunique()
