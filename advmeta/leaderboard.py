"""Records of evaluations and the leaderboard made from them.

:func:`summarize` turns an evaluation's rows (one model's, or one trial's of a sweep) into the
numbers a reader compares, per ε: clean accuracy, PGD and AutoAttack on the query, the per-query
worst white-box case, PGD through the adaptation (``support``, ``support+query``), the fixed
surrogate's transfer; each with its 95 % interval and episode count; the strongest attack (the
lowest accuracy among them) and the flags (failed masking/convergence checks, unconverged rows).

:func:`leaderboard` reads ``record.json`` files (``advmeta evaluate``) and finished sweep folders
(their ``summary.parquet``, one entry per trial) into one table, sorted by the strongest attack's
accuracy (most robust first), written as Markdown and as one self-contained HTML page.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from advmeta.errors import ConfigError, CorruptDataError, DataNotFoundError

RECORD_FORMAT = "advmeta-record/1"
# What each result is: (scenario, support, query, attack) of its summary row.
RESULTS: dict[str, tuple[str, str, str, str]] = {
    "clean": ("whitebox", "clean", "clean", "none"),
    "pgd": ("whitebox", "clean", "adv", "pgd"),
    "autoattack": ("whitebox", "clean", "adv", "autoattack"),
    "worst": ("whitebox", "clean", "adv", "worst"),
    "support": ("support", "adv", "clean", "pgd"),
    "support+query": ("support+query", "adv", "adv", "pgd"),
    "transfer": ("surrogate", "clean", "adv", "transfer"),
}
ATTACKS = ("pgd", "autoattack", "worst", "support", "support+query", "transfer")


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def summarize(rows: Iterable[Mapping[str, Any]], checks: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The comparable numbers of one evaluation's summary rows (and its checks' rows).

    Returns:
        ``{"results": {eps_str: {name: {"acc", "ci95", "n_episodes"}}}, "strongest": {"eps", "attack",
        "acc", "ci95"} or None, "flags": [...], "flags_by_eps": {eps_str: [...]}}``; the clean row
        (ε 0) is listed under every ε.
    """
    by_key: dict[tuple[str, str, str, str, str], Mapping[str, Any]] = {}
    flags: list[tuple[str, str]] = []  # (ε, what)
    for r in rows:
        key = (str(r.get("scenario")), str(r.get("support")), str(r.get("query")), str(r.get("attack")),
               str(r.get("eps_str")))
        before = by_key.get(key)
        if before is None or int(r.get("finetune_step") or 0) >= int(before.get("finetune_step") or 0):
            by_key[key] = r  # the adapted model: the last fine-tune step
        where = f"{r.get('scenario')}/{r.get('attack')} at ε {r.get('eps_str')}"
        if r.get("converged") is False or str(r.get("converged")) == "False":
            flags.append((str(r.get("eps_str")), f"{where}: not converged"))
        elif _num(r.get("converged")) is None and _num(r.get("attack_iterations")) is not None:
            # an iterative attack that was not escalated (a quick sweep escalates only what a claim reads)
            flags.append((str(r.get("eps_str")), f"{where}: convergence not checked"))
    eps_list = sorted({k[4] for k in by_key if k[4] != "0/255"}, key=lambda e: _num(e.split("/")[0]) or 0.0)
    results: dict[str, dict[str, Any]] = {}
    for es in eps_list:
        out = {}
        for name, (sc, sup, q, att) in RESULTS.items():
            row = by_key.get((sc, sup, q, att, "0/255" if name == "clean" else es))
            if row is not None:
                out[name] = {"acc": _num(row.get("acc")), "ci95": _num(row.get("acc_ci95")),
                             "n_episodes": int(row.get("n_episodes") or 0)}
        results[es] = out
    candidates = [(float(out[a]["acc"]), es, a) for es, out in results.items() for a in ATTACKS
                  if a in out and out[a]["acc"] is not None]
    strongest = None
    if candidates:
        acc, es, name = min(candidates)
        strongest = {"eps": es, "attack": name, "acc": acc, "ci95": results[es][name]["ci95"]}
    for c in checks:
        if c.get("passed") is False or str(c.get("passed")) == "False":
            from advmeta.checks import DIAGNOSES

            given = c.get("diagnosis")
            diagnosis = str(given) if isinstance(given, str) and given else DIAGNOSES.get(str(c.get("check")),
                                                                                          "masking suspected")
            flags.append((str(c.get("eps_str")), f"{c.get('check')} at ε {c.get('eps_str')}: {diagnosis}"))
    return {"results": results, "strongest": strongest, "flags": [f for _, f in dict.fromkeys(flags)],
            "flags_by_eps": {es: [f for e, f in dict.fromkeys(flags) if e == es] for es in results}}


def write_record(path: str | Path, record: Mapping[str, Any]) -> Path:
    """``record.json``, atomically."""
    from advmeta.atomic import write_text_atomic

    return write_text_atomic(path, json.dumps(dict(record), indent=2, ensure_ascii=False, default=str) + "\n")


def read_record(path: str | Path) -> dict[str, Any]:
    """A ``record.json`` (plain JSON: nothing in it is executed).

    Raises:
        CorruptDataError: not a record.
    """
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise CorruptDataError(f"{path} is not a readable record ({type(err).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT:
        raise CorruptDataError(f"{path} is not an advmeta evaluation record (format {RECORD_FORMAT})")
    return doc


# -- the leaderboard --------------------------------------------------------------------------------

def _entry(name: str, source: str, summary: Mapping[str, Any], facts: Mapping[str, Any],
           reported: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for es, res in summary["results"].items():
        strongest = min(((res[a]["acc"], a) for a in ATTACKS if a in res and res[a]["acc"] is not None), default=None)
        flags = (summary.get("flags_by_eps") or {}).get(es, summary["flags"])
        out.append({"model": name, "source": source, "eps": es, **facts, "results": res,
                    "strongest": strongest[1] if strongest else "", "robust": strongest[0] if strongest else None,
                    "flags": list(flags), "reported": dict(reported)})
    return out


def entries(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The leaderboard's entries of evaluation folders / record files and finished sweep folders.

    Raises:
        DataNotFoundError: a path is neither a record nor a sweep folder with a summary.
    """
    from advmeta.results import load, read_table

    found: list[dict[str, Any]] = []
    for p in map(Path, paths):
        record = p if p.is_file() else p / "record.json"
        if record.is_file():
            rec = read_record(record)
            facts = {"dataset": rec.get("dataset"), "shape": f"{rec.get('n_way')}-way {rec.get('k_shot')}-shot",
                     "adapt": (rec.get("model") or {}).get("adapt", {}).get("adapt", ""),
                     "budget": rec.get("budget"), "episodes": (rec.get("episodes") or {}).get("hash", "")}
            found += _entry(str((rec.get("model") or {}).get("name")), str(record.parent), rec, facts,
                            rec.get("reported") or {})
        elif (p / "summary.parquet").is_file():
            summary, _ = load(p)
            checks = read_table(p, "checks")
            budget = ""
            if (p / "sweep.json").is_file():
                budget = str(json.loads((p / "sweep.json").read_text()).get("budget", ""))
            ok = summary[summary["status"] == "ok"] if "status" in summary.columns else summary
            for tid, rows in ok.groupby("trial_id", sort=True):
                recs = rows.to_dict("records")
                if not any(r.get("scenario") == "whitebox" for r in recs):
                    continue  # not an episodic evaluation (L2L, GAIL)
                first = recs[0]
                crow = checks[checks["trial_id"] == tid].to_dict("records") if len(checks) else []
                facts = {"dataset": first.get("dataset"), "shape": f"{first.get('n_way')}-way {first.get('k_shot')}-shot",
                         "adapt": "advmeta", "budget": budget, "episodes": str(first.get("episodes_hash") or "")}
                found += _entry(f"{first.get('method')} ({tid[:8]})", str(p), summarize(recs, crow), facts, {})
        else:
            raise DataNotFoundError(f"{p}: neither a record.json (advmeta evaluate) nor a sweep folder with "
                                    "summary.parquet")
    if not found:
        raise ConfigError("no evaluations with episodic white-box results in the given folders")
    # comparable rows together (dataset, shape, ε); complete evaluations first, most robust first
    found.sort(key=lambda e: (e["dataset"] or "", e["shape"], _num(str(e["eps"]).split("/")[0]) or 0.0,
                              not complete(e["results"]), -(e["robust"] if e["robust"] is not None else -1.0)))
    return found


def complete(results: Mapping[str, Any]) -> bool:
    """Whether an evaluation ran the attacks a robust accuracy needs: AutoAttack (or the worst case
    over white-box attacks) on the query, and PGD through the adaptation on support and query."""
    return any(k in results for k in ("autoattack", "worst")) and "support+query" in results


def _cell(res: Mapping[str, Any], name: str) -> str:
    r = res.get(name)
    if not r or r.get("acc") is None:
        return "—"
    ci = f" ± {r['ci95']:.1f}" if r.get("ci95") is not None else ""
    return f"{r['acc']:.1f}{ci}"


def _gaps(e: Mapping[str, Any]) -> str:
    parts = []
    for key, value in e["reported"].items():
        if key == "source":
            continue
        got = e["results"].get(key, {}).get("acc")
        reported = _num(value)
        if got is not None and reported is not None:
            parts.append(f"{key} {reported:.1f} reported, {got - reported:+.1f}")
    return "; ".join(parts)


COLUMNS = ("model", "dataset", "shape", "eps", "adapt", "budget", "clean", "autoattack", "worst", "support",
           "support+query", "transfer", "strongest", "flags", "reported vs measured", "episodes", "from")


def _row(e: Mapping[str, Any]) -> list[str]:
    flag = f"⚠ {len(e['flags'])}" if e["flags"] else ""
    return [("⚠ " if e["flags"] else "") + str(e["model"]), str(e["dataset"]), str(e["shape"]), str(e["eps"]),
            str(e["adapt"]), str(e["budget"]), *(_cell(e["results"], n) for n in
                                                  ("clean", "autoattack", "worst", "support", "support+query", "transfer")),
            f"{e['strongest']} {e['robust']:.1f}" if e["robust"] is not None else "—", flag, _gaps(e),
            str(e["episodes"])[:12], str(e["source"])]


def markdown(found: Sequence[Mapping[str, Any]]) -> str:
    """The leaderboard as a Markdown table (flags listed under it)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _row(e)) + " |" for e in found]
    notes = [f"- ⚠ {e['model']} (ε {e['eps']}): {'; '.join(e['flags'])}" for e in found if e["flags"]]
    head = ("Accuracy (%) ± 95 % CI over the test episodes. Rows of one dataset, shape and ε are sorted by the "
            "strongest attack's accuracy (the lowest among PGD, AutoAttack, the worst white-box case, support, "
            "support+query and transfer), most robust first; rows without AutoAttack and support+query (a sweep's "
            "tables that did not run them) come after the complete ones, their strongest attack being only the "
            "strongest they ran. ⚠: flagged (failed masking or convergence checks, listed below). `episodes`: the "
            "first 12 hex digits of the test-episode manifest's hash (empty: episodes drawn from the seed).")
    return "\n".join([head, "", *lines, *([""] + ["Flags:"] + notes if notes else []), ""])


def html_page(found: Sequence[Mapping[str, Any]], title: str = "advmeta leaderboard") -> str:
    """The leaderboard as one self-contained HTML page (no scripts, no external files)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = []
    for e in found:
        cls = ' class="flagged"' if e["flags"] else ""
        tip = html.escape("; ".join(e["flags"]))
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in _row(e))
        body.append(f"<tr{cls} title=\"{tip}\">{cells}</tr>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
             "tr.flagged{background:#fff3cd}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            "<p>Accuracy (%) ± 95 % CI over the test episodes, sorted by the strongest attack's accuracy (most robust "
            "first). Highlighted rows carry flags (hover for them): failed masking or convergence checks.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></body></html>\n")


def write_leaderboard(paths: Sequence[str | Path], out: str | Path) -> tuple[Path, Path, list[dict[str, Any]]]:
    """Write ``<out>.md`` and ``<out>.html`` (``out`` without a suffix; a folder: ``out/leaderboard.*``)."""
    from advmeta.atomic import write_text_atomic

    found = entries(paths)
    base = Path(out)
    if base.is_dir() or str(out).endswith("/"):
        base = base / "leaderboard"
    elif base.suffix in (".md", ".html"):
        base = base.with_suffix("")
    md = write_text_atomic(base.with_suffix(".md"), markdown(found))
    page = write_text_atomic(base.with_suffix(".html"), html_page(found))
    return md, page, found
