"""End to end (slow): the `gail` grid at the smoke budget through Ray, the curves and the claims."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("gymnasium")


def _sweep(out: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "XDG_CACHE_HOME": str(cache)}
    cmd = [sys.executable, "-c", "from advmeta.cli.app import main; main()", "sweep", "--grid", "gail", "--budget",
           "smoke", "--output", str(out), "--num-cpus", "2", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)


@pytest.mark.slow
def test_gail_grid_runs_and_is_judged(tmp_path: Path) -> None:
    out, cache = tmp_path / "gail", tmp_path / "cache"
    run = _sweep(out, cache, "--methods", "gail,gail-l2l")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "curves.parquet (60 rows)" in run.stdout and "claims:" in run.stdout
    assert "dataset:" not in run.stderr  # a simulator grid picks no dataset
    curves = pd.read_parquet(out / "curves.parquet")
    assert curves.groupby("trial_id").size().eq(3).all() and curves["trial_id"].nunique() == 20
    assert set(curves["env"]) == {"CartPole-v1", "MountainCar-v0"} and curves["reward"].notna().all()
    # Both experts were trained once, to expert level, and reused by every trial.
    experts = sorted((cache / "advmeta" / "gail-experts").glob("*.pt"))
    assert len(experts) == 2
    first = curves.groupby("env")["expert_reward"].agg(["min", "max"])
    assert (first["min"] == first["max"]).all()
    assert first.loc["CartPole-v1", "min"] >= 475 and first.loc["MountainCar-v0", "min"] >= -110
    claims = pd.read_parquet(out / "report" / "claims.parquet")
    assert set(claims["paper"]) == {"L2L-GAIL"} and len(claims) == 6
    assert (out / "report" / "figures" / "gail_cartpole.png").exists()
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["dataset"] == "none" and manifest["wall_seconds"] > 0
    # The same command again recomputes nothing.
    again = _sweep(out, cache)
    assert again.returncode == 0 and pd.read_parquet(out / "curves.parquet").equals(curves)
