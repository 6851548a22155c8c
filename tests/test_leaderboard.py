"""The record's numbers (summarize) and the leaderboard made of records and finished sweeps."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from advmeta.leaderboard import RECORD_FORMAT, entries, markdown, summarize, write_leaderboard, write_record

REPO = Path(__file__).resolve().parent.parent


def _rows(clean: float, accs: dict[str, float], converged: bool = True) -> list[dict]:  # type: ignore[type-arg]
    from advmeta.leaderboard import RESULTS

    rows = [{"scenario": "whitebox", "support": "clean", "query": "clean", "attack": "none", "eps_str": "0/255",
             "finetune_step": 3, "acc": clean, "acc_ci95": 2.0, "n_episodes": 10},
            # an earlier fine-tune step is not the adapted model
            {"scenario": "whitebox", "support": "clean", "query": "clean", "attack": "none", "eps_str": "0/255",
             "finetune_step": 0, "acc": 20.0, "acc_ci95": 2.0, "n_episodes": 10}]
    for name, acc in accs.items():
        sc, sup, q, att = RESULTS[name]
        rows.append({"scenario": sc, "support": sup, "query": q, "attack": att, "eps_str": "8/255", "finetune_step": 3,
                     "acc": acc, "acc_ci95": 3.0, "n_episodes": 10, "converged": converged})
    return rows


def test_summarize_takes_the_adapted_model_and_the_lowest_attack() -> None:
    s = summarize(_rows(90.0, {"pgd": 50.0, "autoattack": 40.0, "worst": 38.0, "support": 60.0, "support+query": 30.0}),
                  [{"check": "large-eps-chance", "eps_str": "8/255", "passed": False, "diagnosis": "masking suspected"},
                   {"check": "deterministic", "eps_str": "8/255", "passed": True}])
    res = s["results"]["8/255"]
    assert res["clean"] == {"acc": 90.0, "ci95": 2.0, "n_episodes": 10}
    assert s["strongest"] == {"eps": "8/255", "attack": "support+query", "acc": 30.0, "ci95": 3.0}
    assert s["flags"] == ["large-eps-chance at ε 8/255: masking suspected"]
    assert "not converged" in summarize(_rows(90.0, {"pgd": 50.0}, converged=False))["flags"][0]
    # an iterative attack that was not escalated (a quick sweep's row no claim reads): flagged, not trusted
    unchecked = [{**r, "converged": None, "attack_iterations": 10} if r["attack"] == "pgd" else r
                 for r in _rows(90.0, {"pgd": 50.0})]
    assert summarize(unchecked)["flags"] == ["whitebox/pgd at ε 8/255: convergence not checked"]
    na = [{**r, "converged": pd.NA, "attack_iterations": 10} if r["attack"] == "pgd" else r for r in _rows(90.0, {"pgd": 50.0})]
    assert summarize(na)["flags"] == ["whitebox/pgd at ε 8/255: convergence not checked"]


def _record(folder: Path, name: str, clean: float, accs: dict[str, float], flagged: bool = False,
            reported: dict[str, float] | None = None) -> Path:
    checks = [{"check": "square-not-better", "eps_str": "8/255", "passed": False}] if flagged else []
    rec = {"format": RECORD_FORMAT, "model": {"name": name, "adapt": {"adapt": "protonet"}}, "dataset": "omniglot",
           "n_way": 5, "k_shot": 1, "budget": "smoke", "episodes": {"hash": "ab" * 32},
           **summarize(_rows(clean, accs), checks), "reported": reported or {}}
    write_record(folder / name / "record.json", rec)
    return folder / name


def test_leaderboard_sorts_by_the_strongest_attack_marks_flags_and_shows_gaps(tmp_path: Path) -> None:
    weak = _record(tmp_path, "weak", 95.0, {"autoattack": 5.0, "worst": 4.0, "support+query": 10.0})
    strong = _record(tmp_path, "strong", 80.0, {"autoattack": 45.0, "worst": 44.0, "support+query": 41.0}, flagged=True,
                     reported={"clean": 82.0, "autoattack": 55.0})
    md, page, found = write_leaderboard([weak, strong / "record.json"], tmp_path / "board")
    assert [e["model"] for e in found] == ["strong", "weak"]
    text = md.read_text()
    assert text.index("| ⚠ strong") < text.index("| weak")
    assert "autoattack 55.0 reported, -10.0" in text and "clean 82.0 reported, -2.0" in text
    assert "square-not-better at ε 8/255: masking suspected" in text
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html and "http" not in html
    assert html.count('class="flagged"') == 1 and "<td>41.0 ± 3.0</td>" in html


def test_leaderboard_reads_a_committed_sweep(tmp_path: Path) -> None:
    sweep = REPO / "results" / "paper-tables-omniglot"
    if not (sweep / "summary.parquet").is_file():
        pytest.skip("results/paper-tables-omniglot is not in this checkout")
    found = entries([sweep])
    methods = {e["model"].split(" ")[0] for e in found}
    assert {"maml", "protonet", "aq"} <= methods and all(e["budget"] == "quick" for e in found)
    from advmeta.leaderboard import complete

    groups: dict[tuple[str, bool], list[float]] = {}
    for e in found:
        groups.setdefault((e["eps"], complete(e["results"])), []).append(e["robust"])
    for values in groups.values():
        assert values == sorted(values, reverse=True)
    order = [(e["eps"], complete(e["results"])) for e in found]
    assert all(not (a[0] == b[0] and not a[1] and b[1]) for a, b in zip(order, order[1:]))  # complete rows first
    assert "| maml (" in markdown(found)


def test_leaderboard_command_and_its_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from advmeta.cli.app import main

    folder = _record(tmp_path, "m", 90.0, {"autoattack": 40.0})
    for args, code in ((["leaderboard", str(folder), "-o", str(tmp_path / "lb"), "--no-show"], 0),
                       (["leaderboard", str(tmp_path / "absent"), "-o", str(tmp_path / "lb2")], 2)):
        monkeypatch.setattr(sys, "argv", ["advmeta", *args])
        try:
            main()
            got = 0
        except SystemExit as ex:
            got = int(ex.code or 0)
        assert got == code
    err = capsys.readouterr().err
    assert (tmp_path / "lb.md").is_file() and (tmp_path / "lb.html").is_file() and not (tmp_path / "lb2.md").exists()
    assert "error: " in err and "neither a record.json" in err
