"""The runner's commands: bad input is one line on stderr and exit code 2; dry runs list trials."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from advmeta.cli.app import app, main

runner = CliRunner()


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the console entry point in-process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["advmeta", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


BAD = [
    (["sweep", "--grid", "nope"], "unknown grid 'nope'"),
    (["sweep", "--budget", "huge"], "unknown budget 'huge'"),
    (["sweep", "--grid", "tafl", "--dataset", "nope", "--dry-run"], "unknown dataset 'nope'"),
    (["sweep", "--grid", "tafl", "--methods", "nope", "--dry-run", "--dataset", "glyphs"], "unknown method 'nope'"),
    (["sweep", "--grid", "/no/such/grid.toml"], "does not exist"),
    (["sweep", "--grid", "tafl", "--dataset", "glyphs", "--eps", "-2/255", "--dry-run"], "-2/255"),
    (["sweep", "--grid", "tafl", "--dataset", "glyphs", "--eps", "0/255", "--dry-run"], "must be > 0"),
    (["sweep", "--grid", "tafl", "--dataset", "glyphs", "--methods", "", "--dry-run"], "empty method name"),
    (["tune", "nope"], "unknown method 'nope'"),
    (["tune", "tafl", "--gama", "1"], "tafl has no hyper-parameter --gama"),
    (["tune", "tafl", "--gamma", "0:5:0"], "step"),
    (["tune", "tafl", "--gamma", "a:b"], "not a number"),
    (["tune", "tafl", "--gamma"], "needs a value"),
    (["tune", "tafl", "--eps", "2/0"], "malformed epsilon"),
    (["tune", "tafl", "--eps", "2/255:8/255:0"], "step"),
    (["tune", "tafl", "--gamma", "1", "--search", "bayes", "--dry-run", "--dataset", "glyphs"], "unknown search"),
    (["tune", "tafl", "--test-eps", "x/255", "--dry-run", "--dataset", "glyphs"], "not a number|malformed epsilon"),
    (["episodes", "--output", "/tmp/never", "--eps", "foo"], "malformed epsilon"),
    (["episodes", "--output", "/tmp/never", "--split", "nope"], "unknown split"),
    (["report", "/no/such/sweep"], "no summary.parquet"),
    (["sweep", "--resume", "--output", "/no/such/sweep"], "nothing to resume"),
    (["tune", "tafl", "--resume", "--output", "/no/such/sweep"], "nothing to resume"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(args, monkeypatch, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("dataset:", "note:"))]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    import re

    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize("entry", [["advmeta"], [sys.executable, "-m", "advmeta"]], ids=["advmeta", "python -m advmeta"])
def test_console_entry_points_exit_2(entry: list[str]) -> None:
    if entry[0] == "advmeta":
        exe = Path(sys.executable).with_name("advmeta")
        if not exe.exists():
            pytest.skip("console script not installed")
        entry = [str(exe)]
    proc = subprocess.run([*entry, "tune", "tafl", "--gamma", "0:5:0"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --gamma: step of '0:5:0' must be > 0"]


def test_sweep_dry_run_lists_the_grid() -> None:
    result = runner.invoke(app, ["sweep", "--grid", "tafl", "--budget", "smoke", "--dataset", "glyphs", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "19 trials" in result.output  # γ × k, and the MAML the ε is calibrated on
    assert result.output.count("tafl 5w1s") == 18
    assert "calibrated when the sweep starts" in result.output


def test_sweep_dry_run_says_where_each_eps_comes_from() -> None:
    paper = runner.invoke(app, ["sweep", "--grid", "paper-tables", "--budget", "smoke", "--dataset", "miniimagenet",
                                "--dry-run"])
    assert paper.exit_code == 0, paper.output
    assert "ε of table adml: 2/255 (the papers' ε on miniimagenet)" in paper.output
    user = runner.invoke(app, ["sweep", "--grid", "paper-tables", "--budget", "smoke", "--dataset", "glyphs",
                               "--eps", "16/255", "--dry-run"])
    assert user.exit_code == 0, user.output
    assert "ε of table tafl: 16/255 (--eps)" in user.output and "train_eps=16/255" in user.output


def test_tune_dry_run_crosses_ranges_and_lists() -> None:
    result = runner.invoke(app, ["tune", "tafl", "--gamma", "0:5", "--k", "0.1,1,10", "--eps", "2/255:8/255:2/255",
                                 "--budget", "smoke", "--dataset", "glyphs", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "72 trials" in result.output
    assert "train_eps=6/255" in result.output


def test_tune_random_search_is_seeded() -> None:
    args = ["tune", "tafl", "--gamma", "0:5", "--search", "random", "--samples", "4", "--budget", "smoke",
            "--dataset", "glyphs", "--dry-run"]
    first = runner.invoke(app, args).output
    assert "4 trials" in first
    assert runner.invoke(app, args).output == first
    assert runner.invoke(app, [*args, "--seed", "1"]).output != first


def test_tune_params_lists_the_learner_fields() -> None:
    result = runner.invoke(app, ["tune", "tafl", "--params"])
    assert result.exit_code == 0
    assert "--gamma (float, default 2.0, range 0:5)" in result.output
    assert "--train-eps (eps" in result.output


def test_sweep_list() -> None:
    result = runner.invoke(app, ["sweep", "--list"])
    assert result.exit_code == 0
    assert "paper-tables:" in result.output and "tafl:" in result.output


@pytest.mark.parametrize("argv, request_", [
    (["tune", "tafl", "--gamma", "0:5", "--k", "0.1,1", "--budget", "smoke", "--dataset", "glyphs"],
     ("search", dict(method="tafl", options=("--gamma", "0:5", "--k", "0.1,1"), budget="smoke", dataset="glyphs"))),
    (["sweep", "--grid", "tafl", "--budget", "smoke", "--dataset", "glyphs", "--eps", "16/255"],
     ("grid", dict(grid="tafl", budget="smoke", dataset="glyphs", eps="16/255"))),
])
def test_the_python_api_runs_what_the_command_runs(argv: list[str], request_: tuple[str, dict[str, object]],
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """advmeta.tune.runner.run of a request is the command's own road: the same trials, ids and labels."""
    from advmeta.plan import GridRequest, SearchRequest
    from advmeta.tune.runner import SweepOptions, run

    folder = str(tmp_path / "out")
    monkeypatch.setattr(sys, "argv", ["advmeta", *argv, "--dry-run", "--output", folder])
    main()  # returns (exit 0)
    by_command = capsys.readouterr().out
    kind, fields = request_
    request = SearchRequest(**fields) if kind == "search" else GridRequest(**fields)  # type: ignore[arg-type]
    assert run(request, folder, SweepOptions(progress=False), dry_run=True) == 0
    by_api = capsys.readouterr().out
    assert by_api == by_command and by_api.count("\n") > 2
