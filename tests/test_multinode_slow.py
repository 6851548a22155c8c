"""A multi-node Ray cluster on this machine: a head without CPUs and two 1-CPU worker nodes
(``ray.cluster_utils.Cluster``, each node its own raylet). A smoke sweep joins it with
``--address`` and writes to a shared ``--storage``; one worker node is killed mid-sweep (no
graceful drain); every trial must end exactly once, with the numbers of a single-node run.

Slow (about two minutes on 2 cores): ``python -m pytest -m slow tests/test_multinode_slow.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

GRID = """[[tables]]
name = "toy"
methods = ["toy"]
k_shot = [1]
[tables.hparams]
gamma = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
seconds = [0.5]
[[tables.evals]]
scenario = "whitebox"
attacks = ["pgd"]
eps = ["2/255"]
query = ["clean", "adv"]
"""
METRICS = ["trial_id", "scenario", "query", "attack", "eps_str", "acc", "acc_ci95", "loss"]


def _sweep(grid: Path, storage: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "advmeta", "sweep", "--grid", str(grid), "--budget", "smoke", "--dataset", "glyphs",
           "--storage", str(storage), "--no-report", "--quiet", "--max-failures", "2", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RAY_AUTH_MODE": "disabled"})


def _numbers(folder: Path) -> pd.DataFrame:
    frame = pd.read_parquet(folder / "summary.parquet")
    return frame[METRICS].sort_values(["trial_id", "query", "attack"]).reset_index(drop=True)


def test_a_sweep_on_three_nodes_survives_losing_a_worker(tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    grid = tmp_path / "toy.toml"
    grid.write_text(GRID)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 0, "object_store_memory": 256 * 2**20})
    try:
        workers = [cluster.add_node(num_cpus=1, object_store_memory=256 * 2**20) for _ in range(2)]
        cluster.wait_for_nodes()
        shared = tmp_path / "shared"
        proc = _sweep(grid, shared, "--address", cluster.address)
        done = shared / "toy" / "trials"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(list(done.glob("*/DONE.json"))) < 2 and proc.poll() is None:
            time.sleep(0.2)
        n_before = len(list(done.glob("*/DONE.json")))
        assert proc.poll() is None and 2 <= n_before < 6, f"the node must be lost mid-sweep ({n_before} done)"
        cluster.remove_node(workers[1], allow_graceful=False)  # a crashed machine, not a drained one
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (out + err)[-3000:]
    finally:
        cluster.shutdown()
    multi = _numbers(shared / "toy")
    assert multi["trial_id"].nunique() == 6 and len(multi) == 6 * 2  # each trial once: clean + pgd rows
    assert len(list(done.glob("*/DONE.json"))) == 6
    starts = [int(f.read_text()) for f in (shared / "toy" / "trials").rglob("starts")]
    assert len(starts) == 6 and max(starts) == 2, f"the lost node's trial restarted elsewhere once: {starts}"

    single = _sweep(grid, tmp_path / "single")
    out, err = single.communicate(timeout=300)
    assert single.returncode == 0, (out + err)[-3000:]
    pd.testing.assert_frame_equal(multi, _numbers(tmp_path / "single" / "toy"))
