"""The report's figures and ``report/index.html``: every legend entry drawn, a self-contained page
that runs nothing, and (slow) the page in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from advmeta.results import to_frame, write_parquet_atomic

REPO = Path(__file__).resolve().parent.parent
OMNIGLOT = REPO / "results" / "paper-tables-omniglot"
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


# -- every legend entry is drawn ---------------------------------------------------------------
def _drawn(artist: Any) -> bool:
    """Whether an artist puts something on its axes."""
    from matplotlib.collections import Collection
    from matplotlib.container import BarContainer, ErrorbarContainer
    from matplotlib.lines import Line2D

    if isinstance(artist, ErrorbarContainer):
        return _drawn(artist.lines[0])
    if isinstance(artist, BarContainer):
        return any(np.isfinite(p.get_height()) and p.get_height() != 0 for p in artist.patches)
    if isinstance(artist, Line2D):
        x, y = (np.asarray(a, dtype=float) for a in artist.get_data())
        n = int(np.sum(np.isfinite(x) & np.isfinite(y)))
        line = artist.get_linestyle() not in ("None", "", " ") and n >= 2
        marker = artist.get_marker() not in ("None", "", " ", None) and n >= 1
        return artist.get_visible() and (line or marker)
    if isinstance(artist, Collection):
        return len(artist.get_offsets()) > 0 or len(artist.get_paths()) > 0
    return True


def assert_legends_drawn(fig: Any) -> int:
    """Every legend entry of ``fig`` names an artist drawn on its axes; returns how many entries."""
    artists: dict[str, list[Any]] = {}
    for ax in fig.axes:
        for a in [*ax.lines, *ax.collections, *ax.containers]:
            artists.setdefault(str(a.get_label()), []).append(a)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    count = 0
    for legend in legends:
        for text in legend.get_texts():
            label = text.get_text()
            assert any(_drawn(a) for a in artists.get(label, [])), f"legend entry {label!r} has nothing drawn"
            count += 1
    return count


@pytest.fixture()
def figures_seen(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures the report draws, checked for legends before they are written."""
    import advmeta.report_figures as rf

    seen: list[Any] = []
    real = rf._save

    def save(fig: Any, path: Path) -> Path:
        seen.append((path.name, assert_legends_drawn(fig)))
        return real(fig, path)

    monkeypatch.setattr(rf, "_save", save)
    return seen


def test_accuracy_against_step_draws_every_legend_entry(figures_seen: list[Any], tmp_path: Path) -> None:
    """The old figure listed dashed surrogate lines of a single point each, which draw nothing."""
    from advmeta.report_figures import acc_vs_step

    rows = []
    for method in ("maml", "adml"):
        for step in (0, 1, 2):
            rows.append({"trial_id": method, "method": method, "status": "ok", "scenario": "finetune", "support": "clean",
                         "query": "clean", "attack": "none", "eps_str": "0/255", "finetune_step": step, "acc": 20.0 + 30 * step,
                         "acc_ci95": 2.0})
        for query in ("clean", "adv"):
            rows.append({"trial_id": method, "method": method, "status": "ok", "scenario": "surrogate", "support": "clean",
                         "query": query, "attack": "transfer" if query == "adv" else "none", "eps_str": "2/255",
                         "finetune_step": 2, "acc": 80.0 if query == "clean" else 60.0, "acc_ci95": 3.0})
    assert acc_vs_step(to_frame(rows), tmp_path / "a.png") is not None
    assert figures_seen == [("a.png", 2 + 2)]  # two methods, then clean and attacked query


@pytest.mark.skipif(not (OMNIGLOT / "summary.parquet").is_file(), reason="the committed Omniglot run is not here")
def test_figures_of_the_committed_omniglot_run(figures_seen: list[Any], tmp_path: Path) -> None:
    """An old results folder (no curves, no attack_iterations): the calibration, convergence (from the masking
    check), clean-vs-robust and adaptive figures are drawn, every legend entry with something behind it."""
    from advmeta.report import tables
    from advmeta.report_figures import acc_vs_step, adaptive_chart, calibration_curve, clean_vs_robust, convergence
    from advmeta.report_html import read_calibration
    from advmeta.results import load, load_manifest, read_table

    summary, episodes = load(OMNIGLOT)
    manifest = load_manifest(OMNIGLOT)
    ada = [t for t in tables(summary, episodes) if t.title.startswith("Attacks through the adaptation")][0]
    made = [calibration_curve(read_calibration(OMNIGLOT), manifest, tmp_path / "calibration.png"),
            convergence(summary, read_table(OMNIGLOT, "checks"), tmp_path / "convergence.png"),
            clean_vs_robust(summary, tmp_path / "clean_vs_robust.png"),
            adaptive_chart(ada.mean, ada.ci, "adaptive", tmp_path / "adaptive.png"),
            acc_vs_step(summary, tmp_path / "acc_vs_step.png")]
    assert all(p is not None and p.stat().st_size > 10_000 for p in made)
    assert all(n > 0 for _, n in figures_seen) and len(figures_seen) == 5


# -- a tiny sweep folder ---------------------------------------------------------------------------
def tiny_sweep(folder: Path, error: str = "ok") -> None:
    """Two seeds of one learner and one of another: summary rows (white-box, fine-tune steps), curves, manifest."""
    rng = np.random.default_rng(0)
    rows, curves, trials = [], [], []
    # learners of no claim (the claims are not what this tests)
    for tid, method, seed in (("m0", "learner-a", 0), ("m1", "learner-a", 1), ("a0", "learner-b", 0)):
        base = {"sweep": "tiny", "trial_id": tid, "status": "ok", "error": "", "method": method, "dataset": "glyphs",
                "k_shot": 1, "n_way": 5, "seed": seed, "split": "test", "train_seconds": 10.0, "n_episodes": 20}
        for step in (0, 1, 2):
            rows.append({**base, "scenario": "finetune", "support": "clean", "query": "clean", "attack": "none",
                         "eps": 0.0, "eps_str": "0/255", "finetune_step": step, "acc": 20 + 30 * step, "acc_ci95": 3.0})
        rows.append({**base, "scenario": "whitebox", "support": "clean", "query": "clean", "attack": "none", "eps": 0.0,
                     "eps_str": "0/255", "finetune_step": 2, "acc": 85.0, "acc_ci95": 3.0, "attack_params": "{}"})
        for eps in ("2/255", "8/255"):
            rows.append({**base, "scenario": "whitebox", "support": "clean", "query": "adv", "attack": "pgd",
                         "eps": int(eps.split("/")[0]) / 255, "eps_str": eps, "finetune_step": 2,
                         "acc": 40.0 - int(eps.split("/")[0]) + (20 if method == "learner-b" else 0), "acc_ci95": 4.0,
                         "attack_params": json.dumps({"steps": 10})})
        for i in range(1, 7):
            curves.append({"sweep": "tiny", "trial_id": tid, "method": method, "dataset": "glyphs", "k_shot": 1,
                           "seed": seed, "iteration": i, "train_loss": 2.0 / i + rng.normal(0, 0.05),
                           "train_adv_acc": 10.0 * i if method == "learner-b" else None,
                           "val_acc": 30 + 8 * i + rng.normal(0, 2) if i % 3 == 0 else None, "train_seconds": float(i)})
        trials.append({"trial_id": tid, "method": method, "family": "meta", "table": ["tiny"]})
    rows.append({"sweep": "tiny", "trial_id": "bad", "status": "error", "error": error, "method": "tafl"})
    trials.append({"trial_id": "bad", "method": "tafl", "family": "meta", "table": ["tiny"]})
    folder.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(to_frame(rows), folder / "summary.parquet")
    write_parquet_atomic(to_frame(curves, "curves"), folder / "curves.parquet")
    (folder / "sweep.json").write_text(json.dumps({"name": "tiny", "grid": "tiny", "budget": "smoke", "trials": trials}))


def test_index_html_is_self_contained_and_runs_nothing(figures_seen: list[Any], tmp_path: Path) -> None:
    from advmeta.report import write_report

    hostile = '<script>document.title="owned"</script><img src=x onerror=alert(1)>'
    tiny_sweep(tmp_path / "tiny", error=hostile)
    paths = write_report(tmp_path / "tiny")
    page = (tmp_path / "tiny" / "report" / "index.html").read_text()
    assert "<script" not in page.lower() and "<img src=x" not in page
    assert html_escape(hostile) in page
    assert re.search(r'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:;', page)
    assert not re.search(r'(src|href)="(?!data:image/png;base64,|#)', page)  # nothing loaded from anywhere
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)
    names = {p.stem for p in paths["figures"]}
    assert set(images) == names and {"acc_vs_eps", "acc_vs_step", "clean_vs_robust", "curves_tiny"} <= names
    assert all(n > 0 for _, n in figures_seen)
    curves = dict(figures_seen)["curves_tiny.png"]
    assert curves == 2  # learner-a (2 seeds) and learner-b: one legend entry each, drawn
    md = (tmp_path / "tiny" / "report" / "report.md").read_text()
    assert "## Learning curves" in md and "figures/curves_tiny.png" in md and "figures/clean_vs_robust.png" in md


def html_escape(text: str) -> str:
    import html

    return html.escape(text)


# -- in a real browser ---------------------------------------------------------------------------
def chromium(args: list[str], tmp: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a fresh profile in ``tmp``."""
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=timeout)


def check_page(page: Path, tmp: Path, screenshot: Path) -> dict[str, Any]:
    """Load ``page`` in Chromium: its console messages (none expected), how many of its images decoded
    (through a copy with a checking script: the page itself forbids scripts), and a screenshot of it
    whole (written to ``screenshot``)."""
    tmp.mkdir(parents=True, exist_ok=True)
    url = page.resolve().as_uri()
    plain = chromium(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", url], tmp)
    console = [ln for ln in plain.stderr.splitlines() if ":CONSOLE" in ln]
    checker = ("<script>addEventListener('load',()=>{const i=[...document.images];document.body.setAttribute("
               "'data-decoded',i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length);document.body."
               "setAttribute('data-height',document.documentElement.scrollHeight)})</script>")
    copy = tmp / "checked.html"
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page.read_text())
    copy.write_text(text.replace("</body>", checker + "</body>"))
    dom = chromium(["--virtual-time-budget=5000", "--dump-dom", copy.resolve().as_uri()], tmp).stdout
    decoded = re.search(r'data-decoded="(\d+)/(\d+)"', dom)
    height = re.search(r'data-height="(\d+)"', dom)
    assert decoded and height, dom[-500:]
    chromium([f"--window-size=1280,{min(int(height.group(1)), 16000)}", f"--screenshot={screenshot.resolve()}", url], tmp)
    return {"console": console, "decoded": int(decoded.group(1)), "images": int(decoded.group(2)),
            "img_tags": len(re.findall(r"<img ", plain.stdout)), "height": int(height.group(1))}


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.is_file(), reason="/usr/bin/chromium is absent: apt-get install chromium (Debian)")
@pytest.mark.skipif(not (OMNIGLOT / "summary.parquet").is_file(), reason="the committed Omniglot run is not here")
def test_the_omniglot_report_in_headless_chromium(tmp_path: Path) -> None:
    """The committed Omniglot run re-rendered (~15 s) and opened in Chromium: no console message, every image
    decodes, a screenshot is written."""
    from advmeta.report import write_report

    folder = tmp_path / "paper-tables-omniglot"
    shutil.copytree(OMNIGLOT, folder, ignore=shutil.ignore_patterns("report"))
    paths = write_report(folder)
    assert len(paths["figures"]) >= 6
    shot = tmp_path / "index.png"
    seen = check_page(folder / "report" / "index.html", tmp_path / "chromium", shot)
    assert seen["console"] == [], seen["console"]
    assert seen["images"] == seen["img_tags"] == len(paths["figures"]) and seen["decoded"] == seen["images"]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size[0] == 1280 and im.size[1] >= 2000


@pytest.mark.parametrize("folder", ["l2l-omniglot", "l2l-miniimagenet"])
def test_a_folder_whose_rows_name_no_trial_reports(folder: str, tmp_path: Path) -> None:
    """The L2L script's committed folders (rows written before trials had ids) report; their claims name no trial."""
    from advmeta.report import write_report

    paths = write_report(str(REPO / "results" / folder), str(tmp_path))
    assert sum(paths["verdicts"].values()) > 0 and Path(paths["markdown"]).read_text()
    assert pd.read_parquet(tmp_path / "claims.parquet")["trial_ids"].eq("").all()
