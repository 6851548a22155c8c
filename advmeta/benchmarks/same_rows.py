"""Whether two sweep folders hold the same rows: the reproducibility check of two runs of one grid.

    python -m advmeta.benchmarks.same_rows RUN_A RUN_B

Compares ``summary``, ``episodes``, ``checks`` and ``curves`` (the merged tables, then each finished
trial's own under ``trials/<id>/``) on every column but those a rerun legitimately changes: seconds,
dates, the source path, the thread count and the device. Prints one line per table and exits 1
when any differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

TABLES = ("summary", "episodes", "checks", "curves")
VARIES = {"created_at", "advmeta_source", "torch_threads", "device"}


def same(a: pd.DataFrame, b: pd.DataFrame) -> tuple[bool, int]:
    """Whether two tables hold the same rows (in any order) on the columns that do not vary; the columns compared."""
    cols = [c for c in a.columns if c in b.columns and c not in VARIES and not c.endswith("seconds")]
    if set(a.columns) - VARIES != set(b.columns) - VARIES or len(a) != len(b):
        return False, len(cols)
    x = a[cols].astype(str).sort_values(cols).reset_index(drop=True)
    y = b[cols].astype(str).sort_values(cols).reset_index(drop=True)
    return bool(x.equals(y)), len(cols)


def compare(a: Path, b: Path) -> list[tuple[str, bool]]:
    """Every table of ``a`` and ``b``, merged and per trial: (name, same)."""
    out = []
    for table in TABLES:
        fa, fb = a / f"{table}.parquet", b / f"{table}.parquet"
        if fa.exists() or fb.exists():
            ok = fa.exists() and fb.exists()
            if ok:
                ok, ncols = same(pd.read_parquet(fa), pd.read_parquet(fb))
                print(f"{table}: {len(pd.read_parquet(fa))} rows, {ncols} columns: {'identical' if ok else 'DIFFERENT'}")
            else:
                print(f"{table}: in one folder only")
            out.append((table, ok))
    trials = sorted({p.name for p in (a / "trials").glob("*")} | {p.name for p in (b / "trials").glob("*")})
    for tid in trials:
        for table in TABLES:
            fa, fb = a / "trials" / tid / f"{table}.parquet", b / "trials" / tid / f"{table}.parquet"
            if fa.exists() or fb.exists():
                ok = fa.exists() and fb.exists() and same(pd.read_parquet(fa), pd.read_parquet(fb))[0]
                out.append((f"trials/{tid}/{table}", ok))
    per_trial = [ok for name, ok in out if name.startswith("trials/")]
    print(f"trials: {len(trials)}, their tables identical: {sum(per_trial)} of {len(per_trial)}")
    for name, ok in out:
        if not ok and name.startswith("trials/"):
            print(f"  DIFFERENT: {name}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    args = ap.parse_args(argv)
    results = compare(args.a, args.b)
    return 0 if results and all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
