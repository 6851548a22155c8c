"""python -m advmeta.benchmarks.same_rows: two runs' folders compared row for row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from advmeta.benchmarks.same_rows import main


def _folder(root: Path, acc: float, seconds: float) -> Path:
    (root / "trials" / "t1").mkdir(parents=True)
    rows = pd.DataFrame({"trial_id": ["t1", "t1"], "attack": ["none", "pgd"], "acc": [90.0, acc],
                         "eval_seconds": [seconds, seconds], "created_at": ["now", "now"]})
    rows.to_parquet(root / "summary.parquet")
    rows.to_parquet(root / "trials" / "t1" / "summary.parquet")
    return root


def test_times_may_differ_a_number_may_not(tmp_path: Path) -> None:
    a = _folder(tmp_path / "a", 41.5, 1.0)
    assert main([str(a), str(_folder(tmp_path / "b", 41.5, 9.0))]) == 0  # only the seconds differ
    assert main([str(a), str(_folder(tmp_path / "c", 41.6, 1.0))]) == 1
