"""The claims table as files: ``claims.md`` (a section per paper) and ``claims.parquet``.

:mod:`advmeta.claims` computes the verdicts; this writes them, atomically, for ``advmeta report``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from advmeta.claims import VERDICTS, evaluate_claims
from advmeta.errors import ConfigError


def format_value(r: Any) -> str:
    """A claim row's value as shown: ``–`` when unmeasured, ``v ± ci`` (or ``v`` when it has no CI)."""
    if pd.isna(r.value):
        return "–"
    if str(r.ci_method).startswith("none"):
        return f"{r.value:.3g}"
    digits = 3 if max(abs(r.value), abs(r.ci95) if not pd.isna(r.ci95) else 0.0) < 1 else 2  # normalised values
    return f"{r.value:.{digits}f} ± {r.ci95:.{digits}f}"


def claims_markdown(frame: pd.DataFrame) -> str:
    """The verdicts as Markdown: a section per paper, a table row per claim, the verdict in bold."""
    def cell(x: object) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["## The papers' claims", "", CLAIMS_RULE, ""]
    if len(frame):
        counts = frame["verdict"].value_counts()
        lines += ["Verdicts: " + ", ".join(f"{int(counts.get(v, 0))} {v}" for v in VERDICTS) + ".", ""]
    for paper, sub in frame.groupby("paper", sort=False):
        lines += [f"### {paper}: {sub['title'].iloc[0]}", "",
                  "| claim | rows | value ± 95% CI | test | verdict | decided by | detail |", "|---|---|---|---|---|---|---|"]
        for r in sub.itertuples():
            val = format_value(r)
            claim = f"{r.claim} (`{r.claim_id}`" + (f", {r.group})" if r.group else ")")
            decided = getattr(r, "decided_by", "") or ""
            lines.append(f"| {cell(claim)} | {cell(r.rows)} | {val} | {r.op} {r.threshold:g} | **{r.verdict}** "
                         f"| {cell(decided)} | {cell(r.detail)} |")
        lines.append("")
    return "\n".join(lines)


CLAIMS_RULE = (
    "A claim **holds** when its whole 95% interval (value ± CI) is on the claim's side of the threshold, "
    "**fails** when it is wholly on the other side, and is **inconclusive** otherwise — unless it rests on a row the "
    "tool itself flags: an attack that had not converged at its cap, or a trial that failed a masking check at that ε; "
    "then it is **unreliable** and the detail says why. Intervals are Student-t over the paired test episodes (over "
    "training seeds where a grid trains several); a sweep that adds blocks of episodes to undecided claims uses "
    "intervals valid over all its planned looks (docs/verdicts.md). `decided by` gives the episodes, seeds and "
    "the largest attack iterations behind each verdict.")


def write_claims(source: str | Path | pd.DataFrame, out_dir: str | Path | None = None, *,
                 episodes: pd.DataFrame | None = None, manifest: Mapping[str, Any] | None = None,
                 claim_files: Sequence[str | Path] | None = None) -> dict[str, Path]:
    """Write ``claims.md`` and ``claims.parquet``, each atomically.

    Args:
        source: a sweep folder or URI (its summary, episodes and ``sweep.json`` are read), a summary
            frame (checked with ``episodes`` and ``manifest``) or a frame from :func:`evaluate_claims`.
        out_dir: where to write; default ``<folder>/report`` (required for a frame).
        episodes, manifest, claim_files: as for :func:`evaluate_claims` (a folder's own
            manifest is read when ``manifest`` is None).

    Returns:
        ``{"markdown": path, "parquet": path}``.
    """
    from advmeta.atomic import write_text_atomic
    from advmeta.results import write_parquet_atomic

    if isinstance(source, pd.DataFrame):
        if out_dir is None:
            raise ConfigError("write_claims: give out_dir when the source is a frame")
        frame = source if "verdict" in source else evaluate_claims(source, episodes, manifest, claim_files)
    else:
        from advmeta.results import load, load_manifest

        from advmeta.results import read_table

        summary, eps = load(source)
        if manifest is None:
            manifest = load_manifest(source)
        frame = evaluate_claims(summary, eps, manifest, claim_files, checks=read_table(source, "checks"))
    out = Path(out_dir) if out_dir is not None else Path(str(source)) / "report"
    return {"markdown": write_text_atomic(out / "claims.md", claims_markdown(frame)),
            "parquet": write_parquet_atomic(frame, out / "claims.parquet")}
