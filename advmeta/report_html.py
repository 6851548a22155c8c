"""``report/index.html``: one self-contained page per sweep, readable offline.

The page holds what ``report.md`` holds — each table's ε, the claims with their verdicts and what
decided them, the tables (mean ± 95 % CI, best of each column in bold), the trials that did not
finish, the masking and convergence flags of every trial — and every figure inline (PNG as
``data:`` URIs): besides the Markdown report's, those drawn here (:func:`extend`): the ε
calibration curve, robust accuracy against the attack's iterations, clean against robust accuracy
per trial, the table of attacks through the adaptation as bars, and the learning curves of every
table. It loads nothing (no script, no font, no stylesheet from anywhere); a Content-Security-Policy
forbids scripts and every other source, and every string read from the results is escaped, so a
results folder received from someone else cannot run code in the reader's browser.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
"""What the page may load: its own inline style and its ``data:`` images, nothing else."""

CAPTIONS = {
    "acc_vs_eps": "Robust accuracy against the test ε (white-box attack on the query; clean accuracy at ε = 0).",
    "gamma_k": "TAFL's robust accuracy over its γ × k grid.",
    "acc_vs_step": "Clean query accuracy through the fine-tuning steps; at the last step, the clean and the "
                   "surrogate-attacked query (ADML Figures 2–3).",
    "l_ar_kde": "Density of TAFL's L_AR over the test episodes, per method.",
    "calibration": "The ε calibration: the grid's MAML under PGD against ε on validation episodes, with the chosen ε.",
    "convergence": "Robust accuracy against the attack's iterations: does more effort still lower it?",
    "clean_vs_robust": "Clean against robust accuracy per trial, both with their 95% intervals.",
    "adaptive": "Attacks through the adaptation: on the query, on the support (through the fine-tuning), on both.",
}

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:1em 2em;
color:#1b1b1b;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1.05em;margin-top:1.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}th,td{border:1px solid #d0d0d0;padding:.25em .5em;
vertical-align:top}th{background:#f1f1f1;text-align:left}tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;white-space:nowrap}.meta{color:#555;font-size:.9em}nav a{margin-right:1em}
.verdict{font-weight:600;padding:0 .4em;border-radius:3px;white-space:nowrap}
.holds{background:#d9f2dd;color:#14532d}.fails{background:#fbd5d5;color:#7f1d1d}
.inconclusive{background:#fdf0c8;color:#713f12}.unreliable{background:#e5e0f5;color:#3b2a73}
.flag{color:#7f1d1d;font-weight:600}.ok{color:#14532d}
figure{margin:1.2em 0;border:1px solid #e3e3e3;padding:.5em;display:inline-block;max-width:100%}
figure img{max-width:100%;height:auto;display:block}figcaption{font-size:.85em;color:#444;margin-top:.3em}
details{margin:.4em 0}small{color:#555}
"""


def _e(value: Any) -> str:
    """``value`` as escaped HTML text (NaN and None as ``–``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    return html.escape(str(value))


def _num(mean: Any, ci: Any = None, digits: int = 1) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    text = f"{float(mean):.{digits}f}"
    if ci is not None and not pd.isna(ci):
        text += f" ± {float(ci):.{digits}f}"
    return text


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure id="fig-{_e(Path(path).stem)}"><img alt="{_e(Path(path).stem)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{_e(caption)}</figcaption></figure>')


def caption_of(path: Path) -> str:
    """A figure's caption from its file name."""
    stem = Path(path).stem
    if stem in CAPTIONS:
        return CAPTIONS[stem]
    if stem.startswith("gail_"):
        return f"{stem[5:]}: GAIL's and L2L-GAIL's true reward against the iteration, mean ± 95% CI over seeds."
    if stem.startswith("curves_"):
        return f"Learning curves of the table {stem[7:]}: training loss, validation accuracy, accuracy on the training attack."
    return stem


def read_calibration(folder: str | Path) -> pd.DataFrame | None:
    """The sweep's ``calibration.parquet`` (the ε ladder of its MAML), or None."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from advmeta.bank import filesystem

    fs, root = filesystem(str(folder))
    try:
        frame = pq.read_table(f"{root}/calibration.parquet", filesystem=fs).to_pandas()
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        return None
    need = {"eps", "eps_str", "acc", "acc_ci95", "clean_acc", "chosen"}
    return frame if need <= set(frame.columns) else None


def extend(folder: str | Path, out_dir: Path, md: list[str], figs: list[Path], *, summary: pd.DataFrame,
           episodes: pd.DataFrame, manifest: dict[str, Any] | None, tables: Sequence[Any], claims: pd.DataFrame,
           checks: pd.DataFrame, curves: pd.DataFrame) -> tuple[list[str], list[Path]]:
    """Draw the figures the Markdown report does not have yet, add them to its lines, and write
    ``out_dir/index.html`` with everything.

    Args:
        folder: the sweep folder (its ``curves.parquet`` and ``calibration.parquet`` are read here).
        out_dir: the report's folder (figures in ``figures/``).
        md: the Markdown report's lines so far; figs: its figures so far.
        summary, episodes, manifest, tables, claims, checks: what the Markdown report was made of.
        curves: the GAIL family's curves (its section).

    Returns:
        The Markdown lines and the figures, each with the new ones appended.
    """
    from advmeta.atomic import write_text_atomic
    from advmeta.report_curves import load_training_curves, training_curve_figures
    from advmeta.report_figures import adaptive_chart, calibration_curve, clean_vs_robust, convergence

    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    drawn = [calibration_curve(read_calibration(folder), manifest, fig_dir / "calibration.png"),
             convergence(summary, checks, fig_dir / "convergence.png"),
             clean_vs_robust(summary, fig_dir / "clean_vs_robust.png")]
    adaptive = [t for t in tables if str(t.title).startswith("Attacks through the adaptation")]
    if adaptive:
        drawn.append(adaptive_chart(adaptive[0].mean, adaptive[0].ci, "attacks through the adaptation (± 95% CI)",
                                    fig_dir / "adaptive.png"))
    new = [p for p in drawn if p is not None]
    training = load_training_curves(folder)
    learning = training_curve_figures(training, summary, manifest, fig_dir)
    lines = []
    if new:
        lines += ["## More figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in new] + [""]
    if learning:
        lines += ["## Learning curves", "", f"Every trainer's training loss and validation accuracy (`curves.parquet`, "
                  f"{len(training)} rows), per table; mean ± 95 % CI band over seeds where a setting has several.", ""]
        lines += [f"![{p.stem}](figures/{p.name})" for _, p in learning] + [""]
    all_figs = list(figs) + new + [p for _, p in learning]
    page = render(folder, summary=summary, manifest=manifest, tables=tables, claims=claims, checks=checks,
                  figures=list(figs) + new, learning=learning, curves=curves, training_rows=len(training))
    write_text_atomic(out_dir / "index.html", page)
    return md + lines, all_figs


def render(folder: str | Path, *, summary: pd.DataFrame, manifest: dict[str, Any] | None, tables: Sequence[Any],
           claims: pd.DataFrame, checks: pd.DataFrame, figures: Sequence[Path],
           learning: Sequence[tuple[str, Path]] = (), curves: pd.DataFrame | None = None,
           training_rows: int = 0) -> str:
    """The page's HTML (see the module docstring)."""
    name = Path(str(folder).rstrip("/")).name
    sections: list[tuple[str, str, str]] = []  # (anchor, title, body)
    eps = _eps_html(manifest)
    if eps:
        sections.append(("eps", "ε of each table", eps))
    if len(claims):
        sections.append(("claims", "The papers' claims", _claims_html(claims)))
    if tables:
        sections.append(("tables", "Tables", "".join(_table_html(t) for t in tables)))
    failed = summary[summary["status"] != "ok"] if len(summary) else summary
    if len(failed):
        body = _frame_html(failed.drop_duplicates("trial_id")[["trial_id", "method", "status", "error"]])
        sections.append(("failed", "Trials that did not finish", body))
    flags = _flags_html(summary, checks)
    if flags:
        sections.append(("checks", "Masking and convergence", flags))
    main = [p for p in figures if not Path(p).stem.startswith(("gail_", "curves_"))]
    if main:
        sections.append(("figures", "Figures", "".join(_img(p, caption_of(p)) for p in main)))
    if learning:
        body = (f"<p>Every trainer's training loss and validation accuracy (<code>curves.parquet</code>, {training_rows} "
                "rows), per table; mean ± 95% CI band over seeds where a setting has several.</p>")
        body += "".join(f"<h3>{_e(t)}</h3>" + _img(p, caption_of(p)) for t, p in learning)
        sections.append(("learning", "Learning curves", body))
    gail = [p for p in figures if Path(p).stem.startswith("gail_")]
    if gail or (curves is not None and len(curves)):
        from advmeta.report_curves import curve_table

        body = _md_table_html(curve_table(curves)) if curves is not None and len(curves) else ""
        sections.append(("gail", "GAIL: learning curves", body + "".join(_img(p, caption_of(p)) for p in gail)))
    trials = set(summary["trial_id"].astype(str)) if len(summary) else set()
    if curves is not None and len(curves):
        trials |= set(curves["trial_id"].astype(str))
    facts = [f"{len(trials)} trials", f"{len(summary)} summary rows"]
    if manifest:
        for key in ("grid", "budget", "dataset", "seed"):
            if manifest.get(key) not in (None, ""):
                facts.append(f"{key} {manifest[key]}")
        if manifest.get("wall_seconds") is not None:
            facts.append(f"wall time {float(manifest['wall_seconds']) / 60:.1f} min on {manifest.get('cpus', '?')} CPUs")
        if manifest.get("advmeta_version"):
            facts.append(f"advmeta {manifest['advmeta_version']}")
    command = f"<p class=meta><code>{_e(manifest['command'])}</code></p>" if manifest and manifest.get("command") else ""
    nav = "<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t, _ in sections) + "</nav>"
    body = "".join(f'<section id="{a}"><h2>{_e(t)}</h2>{b}</section>' for a, t, b in sections)
    made = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>advmeta: {_e(name)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>Results of <code>{_e(name)}</code></h1><p class=meta>{_e('; '.join(facts))}. Accuracy in % as "
            f"mean ± 95% CI over test episodes; best of each column in bold.</p>{command}{nav}{body}"
            f"<p class=meta>Written by <code>advmeta report</code> at {made}.</p></body></html>\n")


def _eps_html(manifest: dict[str, Any] | None) -> str:
    from advmeta.report_common import attacked_tables

    table_eps = attacked_tables(manifest)
    if not table_eps:
        return ""
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(', '.join(v.get('eps', [])) or '(the grid’s own)')}</td>"
                   f"<td>{_e(v.get('source', ''))}</td></tr>" for k, v in table_eps.items())
    text = "<table><tr><th>table</th><th>ε</th><th>source</th></tr>" + rows + "</table>"
    cal = (manifest or {}).get("calibration")
    if cal:
        text += (f"<p>Calibrated ε: <b>{_e(cal.get('eps'))}</b>, the smallest of the ladder at which the grid's MAML "
                 f"falls below {_e(cal.get('threshold', 40))} % under PGD on {_e(cal.get('n_episodes'))} "
                 f"{_e(cal.get('split', 'val'))} episodes (figure <a href=\"#fig-calibration\">calibration</a>)."
                 + (f" The surrogate table's ε: <b>{_e(cal['surrogate'].get('eps'))}</b>." if cal.get("surrogate") else "")
                 + "</p>")
    return text


def _decided_by(r: Any) -> str:
    """What decided a claim: the ``decided_by`` column where the claims have it, else its episodes and interval."""
    decided = getattr(r, "decided_by", None)
    if decided is not None and not pd.isna(decided) and str(decided):
        return str(decided)
    parts = []
    if getattr(r, "n_episodes", None) is not None and not pd.isna(r.n_episodes):
        parts.append(f"{int(r.n_episodes)} episodes")
    if getattr(r, "ci_method", None) and not pd.isna(r.ci_method):
        parts.append(str(r.ci_method))
    return ", ".join(parts)


def _claims_html(claims: pd.DataFrame) -> str:
    from advmeta.claims_io import format_value

    out = ["<p>A claim holds when its whole 95% interval is on the claim's side of the threshold, fails when it is "
           "wholly on the other side, and is inconclusive otherwise" + (", unreliable when what it rests on did not "
           "converge or is suspected of masking" if "reliable" in claims else "") + ".</p>"]
    counts = claims["verdict"].value_counts()
    out.append("<p>" + " ".join(f'<span class="verdict {_e(v)}">{_e(v)}</span> {n}' for v, n in counts.items()) + "</p>")
    extra = [c for c in ("reliable", "attack_iterations", "trial_ids") if c in claims.columns]
    for paper, sub in claims.groupby("paper", sort=False):
        out.append(f"<h3>{_e(paper)}: {_e(sub['title'].iloc[0])}</h3><table><tr><th>claim</th><th>rows</th>"
                   "<th>value ± 95% CI</th><th>test</th><th>verdict</th><th>decided by</th>"
                   + "".join(f"<th>{_e(c.replace('_', ' '))}</th>" for c in extra) + "<th>detail</th></tr>")
        for r in sub.itertuples():
            group = f", {r.group}" if r.group else ""
            verdict = str(r.verdict)
            cells = [f"{_e(r.claim)} <small>({_e(r.claim_id)}{_e(group)})</small>", _e(r.rows),
                     f'<td class=num>{_e(format_value(r))}</td>', f"{_e(r.op)} {float(r.threshold):g}",
                     f'<span class="verdict {_e(verdict)}">{_e(verdict)}</span>', _e(_decided_by(r))]
            for c in extra:
                value = getattr(r, c)
                cells.append("–" if value is None or pd.isna(value) else _e(value))
            cells.append(f"<small>{_e(r.detail)}</small>")
            out.append("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>")
        out.append("</table>")
    return "".join(out)


def _table_html(table: Any) -> str:
    names = [str(n) for n in table.mean.index.names]
    cols = [str(c if not isinstance(c, tuple) else " ".join(map(str, c))) for c in table.mean.columns]
    out = [f"<h3>{_e(table.title)}</h3><table><tr>" + "".join(f"<th>{_e(x)}</th>" for x in names + cols) + "</tr>"]
    for key in table.mean.index:
        keys = [str(k) for k in key] if isinstance(key, tuple) else [str(key)]
        cells = []
        for c in table.mean.columns:
            text = _e(_num(table.mean.at[key, c], table.ci.at[key, c], 2))
            cells.append(f"<td class=num>{'<b>' + text + '</b>' if bool(table.best.at[key, c]) else text}</td>")
        out.append("<tr>" + "".join(f"<td>{_e(k)}</td>" for k in keys) + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"


def _frame_html(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in r) + "</tr>" for r in frame.itertuples(index=False))
    return f"<table><tr>{head}</tr>{rows}</table>"


def _md_table_html(lines: Sequence[str]) -> str:
    """A Markdown pipe table (the report's own lines) as HTML."""
    rows = [ln for ln in lines if ln.startswith("|") and not set(ln) <= set("|-: ")]
    if not rows:
        return ""

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    head = "".join(f"<th>{_e(c)}</th>" for c in cells(rows[0]))
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells(r)) + "</tr>" for r in rows[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def _flags_html(summary: pd.DataFrame, checks: pd.DataFrame) -> str:
    """Per trial: its checks (value ✓ / ✗ against the threshold), the rows that did not converge, its flags."""
    not_conv: dict[str, int] = {}
    if len(summary) and "converged" in summary:
        bad = summary[summary["converged"].eq(False).fillna(False).astype(bool)]
        not_conv = bad.groupby(bad["trial_id"].astype(str)).size().to_dict()
    if checks.empty and not not_conv:
        return ""
    names = list(dict.fromkeys(checks["check"].astype(str))) if len(checks) else []
    out = ["<p>With every white-box evaluation, at its table's first ε (<code>checks.parquet</code>): a cell is the "
           "checked value, ✓ / ✗ against its threshold (– : not run). A failed <code>converged</code> check means "
           "<b>not converged</b> (the attack still gained at its cap: more iterations); any other failed check "
           "means <b>masking suspected</b> (another attack).</p>",
           "<table><tr><th>trial</th><th>method</th><th>ε</th>" + "".join(f"<th>{_e(n)}</th>" for n in names)
           + ("<th>rows not converged</th>" if not_conv or "converged" in summary else "") + "<th>flags</th></tr>"]
    ids = list(dict.fromkeys((list(checks["trial_id"].astype(str)) if len(checks) else []) + list(not_conv)))
    for tid in ids:
        sub = checks[checks["trial_id"].astype(str) == tid] if len(checks) else checks
        by = {str(r.check): r for r in sub.itertuples()}
        cells, flags = [], set()
        for n in names:
            r = by.get(n)
            if r is None or pd.isna(r.passed):
                cells.append("–")
                continue
            text = f"{float(r.value):.1e}" if n == "deterministic" else f"{float(r.value):.1f}"
            if r.ci95 is not None and not pd.isna(r.ci95):
                text += f" ± {float(r.ci95):.1f}"
            if not bool(r.passed):
                diagnosis = getattr(r, "diagnosis", None)
                flags.add(str(diagnosis) if diagnosis is not None and not pd.isna(diagnosis) and str(diagnosis)
                          else "not converged" if n == "converged" else "masking suspected")
            cells.append(f"{_e(text)} {'<span class=ok>✓</span>' if bool(r.passed) else '<span class=flag>✗</span>'}")
        if not_conv.get(tid):
            flags.add("not converged")
        first = sub.iloc[0] if len(sub) else summary[summary["trial_id"].astype(str) == tid].iloc[0]
        conv_cell = f"<td class=num>{not_conv.get(tid, 0)}</td>" if not_conv or "converged" in summary else ""
        flag = ", ".join(f"<span class=flag>{_e(f)}</span>" for f in sorted(flags)) or "<span class=ok>none</span>"
        out.append(f"<tr><td><code>{_e(tid)}</code></td><td>{_e(first['method'])}</td><td>{_e(first.get('eps_str', ''))}</td>"
                   + "".join(f"<td class=num>{c}</td>" for c in cells) + conv_cell + f"<td>{flag}</td></tr>")
    return "".join(out) + "</table>"
