"""What the report's tables and figures share: row labels and a kernel density (numpy only).

Its own module so that :mod:`advmeta.report` and :mod:`advmeta.report_figures` both import it
and neither imports the other.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from advmeta.results import HPARAM_PREFIX

_SKIP_HP = {"inner_steps", "test_inner_steps"}



def row_labels(frame: pd.DataFrame, shots: bool = True) -> pd.Series:
    """``method`` plus the hyper-parameters that vary among that method's rows (``tafl gamma=2 k=1``).

    Args:
        frame: summary rows.
        shots: prefix ``K-shot`` when the rows mix shots (and the table has no column for it).
    """
    hp_cols = [c for c in frame.columns if c.startswith(HPARAM_PREFIX) and c[len(HPARAM_PREFIX):] not in _SKIP_HP]
    labels = frame["method"].astype(str).copy()
    for method, idx in frame.groupby("method").groups.items():
        sub = frame.loc[idx]
        varying = [c for c in hp_cols if sub[c].astype(str).nunique(dropna=False) > 1]
        if varying:
            labels.loc[idx] = sub.apply(lambda r: f"{method} " + " ".join(
                f"{c[len(HPARAM_PREFIX):]}={_fmt(r[c])}" for c in varying), axis=1)
    if shots and "k_shot" in frame and frame["k_shot"].nunique() > 1:
        has = frame["k_shot"].notna()
        labels = labels.where(~has, frame["k_shot"].astype("string").fillna("") + "-shot " + labels)
    return labels.astype(str)



def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)



def gaussian_kde(samples: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density of ``samples`` on ``grid`` with Scott's bandwidth (numpy only)."""
    x = np.asarray(samples, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2 or np.std(x) == 0:
        return np.zeros_like(grid, dtype=np.float64)
    h = 1.06 * np.std(x, ddof=1) * x.size ** (-1 / 5)
    z = (grid[:, None] - x[None, :]) / h
    density: np.ndarray = np.exp(-0.5 * z**2).sum(1) / (x.size * h * math.sqrt(2 * math.pi))
    return density


def attacked_tables(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's ``table_eps`` without the tables whose trials all attack nothing (GAIL's)."""
    if not manifest:
        return {}
    fams: dict[str, set[str]] = {}
    for tr in manifest.get("trials") or []:
        for t in tr.get("table") or []:
            fams.setdefault(str(t), set()).add(str(tr.get("family", "")))
    return {k: v for k, v in (manifest.get("table_eps") or {}).items() if fams.get(k) != {"gail"}}
