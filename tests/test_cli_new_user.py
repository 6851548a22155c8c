"""What a new user is told (issue 28): the last bad inputs are one line and exit 2 before any work
(before Ray starts where the problem is knowable then), and the messages say only what happened."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from advmeta.cli.app import app, main


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str, float]:
    """The console entry point in-process: (exit code, stdout, stderr, seconds)."""
    monkeypatch.setattr(sys, "argv", ["advmeta", *args])
    t0 = time.perf_counter()
    try:
        main()
        code = 0
    except SystemExit as ex:
        code = int(ex.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err, time.perf_counter() - t0


def _problem(err: str) -> list[str]:
    """stderr without the dataset announcement and notes: what the user is told is wrong."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith(("dataset:", "note:"))]


BAD = [
    (["tune", "tafl", "--eps", "300/255"], "--eps: ε 300/255 is above 128/255"),
    (["tune", "tafl", "--eps", "2/255:300/255:2/255"], "--eps: ε 300/255 is above 128/255"),
    (["tune", "tafl", "--eps", "0.9"], "ε 229.5/255 is above 128/255"),
    (["tune", "tafl", "--test-eps", "2"], "--test-eps: ε 510/255 is above 128/255"),
    (["sweep", "--grid", "tafl", "--eps", "300/255"], "--eps: ε 300/255 is above 128/255"),
    (["tune", "maml", "--n-way", "5000"], "5000-way episodes, but its train split has 840 classes"),
    (["tune", "maml", "--n-way", "5000", "--dry-run"], "5000-way episodes, but its train split has 840 classes"),
    (["episodes", "--n-way", "0"], "--n-way must be >= 2, got 0"),
    (["episodes", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["episodes", "--actors", "-1"], "--actors must be >= 0, got -1"),
    (["episodes", "--n-way", "5000", "--actors", "0"], "--n-way 5000: glyphs's test split has 240 classes"),
    (["tune", "maml", "--address", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1"),
    (["sweep", "--grid", "tafl", "--address", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1"),
    (["episodes", "--address", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_before_any_work(args: list[str], message: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--output", str(tmp_path / "out")]
    code, _, err, seconds = run_main([*args, "--dataset", "glyphs", *out], monkeypatch, capsys)
    lines = _problem(err)
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "calibrat" not in err and seconds < 30  # nothing trained, no cluster started
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["tune", "maml"], ["sweep", "--grid", "tafl"], ["episodes"]])
def test_gpus_on_a_machine_without_one_is_an_error_before_ray(command: list[str], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    option = "--gpus-per-actor" if command[0] == "episodes" else "--gpus-per-trial"
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code, _, err, _ = run_main([*command, option, "0.25", "--dataset", "glyphs", "--output", str(tmp_path / "o")],
                               monkeypatch, capsys)
    lines = _problem(err)
    assert code == 2 and len(lines) == 1, err
    assert f"{option} 0.25 requested but this machine has no GPU" in lines[0]
    assert "calibrat" not in err and not (tmp_path / "o").exists()


def test_help_shows_no_restructuredtext_and_no_value_for_flags() -> None:
    runner = CliRunner()
    for command in (["tune"], ["sweep"], []):
        text = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "160"}).output
        assert "``" not in text if command == ["tune"] else True, text
        assert "<bool>" not in text, text  # --dry-run, --version, --help take no value
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "160"}).output
    assert "--version" in top and "Print the version." in top
    assert "<str>" in runner.invoke(app, ["tune", "--help"], env={"COLUMNS": "160"}).output  # options with values keep it


def test_only_the_budget_that_leaves_shots_out_says_so(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, _, smoke, _ = run_main(["sweep", "--grid", "paper-tables", "--budget", "smoke", "--dataset", "glyphs",
                                  "--dry-run"], monkeypatch, capsys)
    assert code == 0 and "left out" not in smoke, smoke
    code, _, quick, _ = run_main(["sweep", "--grid", "paper-tables", "--budget", "quick", "--dataset", "glyphs",
                                  "--dry-run"], monkeypatch, capsys)
    assert code == 0 and "budget quick: 5-shot trials left out" in quick, quick


def test_the_wall_time_line_mentions_a_calibration_only_when_one_ran(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from advmeta.outcome import finish
    from advmeta.outcome import SweepOutcome

    outcome = SweepOutcome(pd.DataFrame({"status": []}), pd.DataFrame(), 1, 1, 0, 0, 0, 5.0, [5.0], None)
    for calibrated in (False, True):
        assert finish("tune-maml", str(tmp_path), outcome, time.time() - 7, 0.0, report=False,
                      calibrated=calibrated) == 0
        line = capsys.readouterr().out.splitlines()[0]
        assert ("calibration" in line) is calibrated, line
