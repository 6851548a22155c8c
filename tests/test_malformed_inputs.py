"""Every malformed invocation of every command: exit 2, one line naming the problem, no traceback.

Each case builds its arguments (some from files it writes: broken grids, a corrupt Parquet file, a
zip with a bad CRC) and runs the console entry point in-process. Nothing here trains: every error
must be found before any work starts.
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from advmeta.cli.app import main

Case = tuple[str, Callable[[Path], list[str]], str]
DRY = ["--dry-run", "--dataset", "glyphs"]


def _grid(tmp: Path, text: str | bytes, name: str = "g.toml") -> str:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


_OK_TABLE = '[[tables]]\nname = "t"\nmethods = ["maml"]\nk_shot = [1]\n'
_EVAL = '[[tables.evals]]\nscenario = "whitebox"\nattacks = ["pgd"]\neps = ["2/255"]\n'


def _bad_grid(body: str) -> Callable[[Path], list[str]]:
    return lambda t: ["sweep", "--grid", _grid(t, body), *DRY]


def _file(tmp: Path) -> str:
    (tmp / "afile").write_text("x")
    return str(tmp / "afile")


def _corrupt_sweep(tmp: Path) -> str:
    (tmp / "sw").mkdir()
    (tmp / "sw" / "summary.parquet").write_bytes(b"PAR1 this is not parquet")
    return str(tmp / "sw")


def _truncated_sweep(tmp: Path) -> str:
    import pandas as pd

    (tmp / "tr").mkdir()
    pd.DataFrame({"a": range(100)}).to_parquet(tmp / "tr" / "summary.parquet")
    data = (tmp / "tr" / "summary.parquet").read_bytes()
    (tmp / "tr" / "summary.parquet").write_bytes(data[: len(data) // 2])
    return str(tmp / "tr")


def _recorded_sweep(tmp: Path) -> str:
    """A sweep folder with a manifest (what --resume reads), no trials run."""
    (tmp / "rec").mkdir()
    (tmp / "rec" / "sweep.json").write_text(json.dumps({"name": "tafl", "grid": "tafl", "budget": "smoke", "seed": 0,
                                                       "dataset": "glyphs", "trials": []}))
    return str(tmp / "rec")


def _recorded_tune(tmp: Path) -> str:
    """A tune folder (tafl, smoke, seed 3) with a manifest, no trials run."""
    (tmp / "rect").mkdir()
    (tmp / "rect" / "sweep.json").write_text(json.dumps({"name": "tune-tafl", "method": "tafl", "budget": "smoke",
                                                        "seed": 3, "dataset": "glyphs", "search": "grid",
                                                        "samples": 1, "trials": []}))
    return str(tmp / "rect")


def _bad_crc_zip(tmp: Path) -> str:
    root = tmp / "data" / "omniglot"
    root.mkdir(parents=True)
    z = root / "images_background.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_STORED) as f:
        f.writestr("images_background/Alpha/character01/a.png", b"\x89PNG" + b"x" * 200)
    data = bytearray(z.read_bytes())
    data[60] ^= 0xFF  # inside the stored member: its CRC no longer matches
    z.write_bytes(bytes(data))
    with zipfile.ZipFile(root / "images_evaluation.zip", "w") as f:
        f.writestr("images_evaluation/Beta/character01/b.png", b"\x89PNG" + b"y" * 200)
    return str(tmp / "data")


def _zip_is_folder(tmp: Path) -> str:
    root = tmp / "data2" / "omniglot" / "images_background.zip"
    root.mkdir(parents=True)
    with zipfile.ZipFile(root.parent / "images_evaluation.zip", "w") as f:
        f.writestr("images_evaluation/Beta/character01/b.png", b"\x89PNG" + b"y" * 200)
    return str(tmp / "data2")


CASES: list[Case] = [
    # usage errors Typer reports (its vendored click exceptions)
    ("unknown option", lambda t: ["sweep", "--grdi", "paper-tables"], r"No such option|--grdi"),
    ("wrong type seed", lambda t: ["sweep", "--seed", "abc"], r"abc|seed"),
    ("wrong type num-cpus", lambda t: ["sweep", "--num-cpus", "two"], r"two|num-cpus"),
    ("wrong type cpus", lambda t: ["sweep", "--cpus-per-trial", "x"], r"cpus-per-trial|'x'"),
    ("tune without method", lambda t: ["tune"], r"METHOD|Missing"),
    ("report without folder", lambda t: ["report"], r"FOLDER|Missing"),
    ("unknown command", lambda t: ["bogus"], r"bogus|No such command"),
    ("unknown data command", lambda t: ["data", "bogus"], r"bogus|No such command"),
    ("episodes unknown option", lambda t: ["episodes", "--bogus"], r"bogus|No such option"),
    ("option needs a value", lambda t: ["sweep", "--grid"], r"requires an argument|--grid"),
    ("report extra argument", lambda t: ["report", "a", "b"], r"unexpected|extra"),
    # sweep: names and values
    ("unknown grid", lambda t: ["sweep", "--grid", "nope"], "unknown grid 'nope'"),
    ("unknown budget", lambda t: ["sweep", "--budget", "huge"], "unknown budget 'huge'"),
    ("unknown dataset", lambda t: ["sweep", "--grid", "tafl", "--dataset", "nope", "--dry-run"], "unknown dataset 'nope'"),
    ("unknown method filter", lambda t: ["sweep", "--grid", "tafl", "--methods", "nope", *DRY], "unknown method 'nope'"),
    ("empty method filter", lambda t: ["sweep", "--grid", "tafl", "--methods", "", *DRY], "empty method name"),
    ("grid file missing", lambda t: ["sweep", "--grid", "/no/such/grid.toml"], "does not exist"),
    ("negative eps", lambda t: ["sweep", "--grid", "tafl", "--eps", "-2/255", *DRY], "-2/255"),
    ("zero eps", lambda t: ["sweep", "--grid", "tafl", "--eps", "0/255", *DRY], "must be > 0"),
    ("eps banana", lambda t: ["sweep", "--grid", "tafl", "--eps", "banana", *DRY], "banana"),
    ("device tpu", lambda t: ["sweep", "--grid", "tafl", "--device", "tpu", *DRY], "tpu"),
    ("cpus per trial zero", lambda t: ["sweep", "--grid", "tafl", "--cpus-per-trial", "0", *DRY], "cpus-per-trial"),
    ("cpus per trial negative", lambda t: ["sweep", "--grid", "tafl", "--cpus-per-trial", "-1", *DRY], "cpus-per-trial"),
    ("gpus per trial negative", lambda t: ["sweep", "--grid", "tafl", "--gpus-per-trial", "-0.5", *DRY], "gpus-per-trial"),
    ("num cpus zero", lambda t: ["sweep", "--grid", "tafl", "--num-cpus", "0", *DRY], "num-cpus"),
    ("max failures negative", lambda t: ["sweep", "--grid", "tafl", "--max-failures", "-1", *DRY], "max-failures"),
    ("output is a file", lambda t: ["sweep", "--grid", "tafl", "--dataset", "glyphs", "--output", _file(t)], "cannot create it|is a file|not a folder"),
    ("output under a file", lambda t: ["sweep", "--grid", "tafl", "--dataset", "glyphs", "--output", _file(t) + "/sub"], "cannot create it|not a folder"),
    ("resume nothing", lambda t: ["sweep", "--resume", "--output", "/no/such/sweep"], "nothing to resume"),
    # grids validated whole, up front
    ("grid invalid toml", _bad_grid("[[tables]\nname="), "invalid TOML"),
    ("grid not utf-8", lambda t: ["sweep", "--grid", _grid(t, b"\xff\xfe[[tables]]\n"), *DRY], "UTF-8|utf-8"),
    ("grid without tables", _bad_grid('description = "x"\n'), "at least one"),
    ("grid unknown method", _bad_grid('[[tables]]\nname = "t"\nmethods = ["nope"]\n' + _EVAL), "nope"),
    ("grid unknown key", _bad_grid(_OK_TABLE + 'colour = "red"\n' + _EVAL), "colour"),
    ("grid unknown attack", _bad_grid(_OK_TABLE + '[[tables.evals]]\nscenario = "whitebox"\nattacks = ["laser"]\neps = ["2/255"]\n'), "laser"),
    ("grid eps banana", _bad_grid(_OK_TABLE + '[[tables.evals]]\nscenario = "whitebox"\nattacks = ["pgd"]\neps = ["banana"]\n'), "banana"),
    ("grid unknown scenario", _bad_grid(_OK_TABLE + '[[tables.evals]]\nscenario = "sideways"\n'), "sideways"),
    ("grid unknown support", _bad_grid(_OK_TABLE + '[[tables.evals]]\nscenario = "surrogate"\neps = ["2/255"]\nsupport = ["half"]\n'), "half"),
    ("grid zero shot", _bad_grid('[[tables]]\nname = "t"\nmethods = ["maml"]\nk_shot = [0]\n' + _EVAL), "k_shot"),
    ("grid one way", _bad_grid('[[tables]]\nname = "t"\nmethods = ["maml"]\nn_way = 1\n' + _EVAL), "n_way"),
    ("grid hparam wrong type", _bad_grid(_OK_TABLE + '[tables.hparams]\ninner_lr = ["fast"]\n' + _EVAL), "inner_lr"),
    ("grid hparam out of range", _bad_grid(_OK_TABLE + '[tables.hparams]\ninner_steps = [-3]\n' + _EVAL), "inner_steps"),
    ("grid unknown hparam", _bad_grid(_OK_TABLE + '[tables.hparams]\nbanana = [1]\n' + _EVAL), "banana"),
    ("grid eval not a table", _bad_grid(_OK_TABLE + 'evals = [1]\n'), "eval"),
    ("grid bad calibrate rule", _bad_grid(_OK_TABLE + 'calibrate = "vibes"\n' + _EVAL), "calibrate"),
    ("grid bad episodes", _bad_grid(_OK_TABLE + '[[tables.evals]]\nscenario = "whitebox"\nattacks = ["pgd"]\neps = ["2/255"]\nepisodes = 0\n'), "episodes"),
    ("grid bad attack steps", _bad_grid(_OK_TABLE + '[[tables.evals]]\nscenario = "whitebox"\nattacks = ["pgd"]\neps = ["2/255"]\nattack_steps = -1\n'), "attack_steps"),
    # tune
    ("tune unknown method", lambda t: ["tune", "nope"], "unknown method 'nope'"),
    ("tune unknown hparam", lambda t: ["tune", "tafl", "--gama", "1"], "tafl has no hyper-parameter --gama"),
    ("tune zero step", lambda t: ["tune", "tafl", "--gamma", "0:5:0"], "step"),
    ("tune not a number", lambda t: ["tune", "tafl", "--gamma", "a:b"], "not a number"),
    ("tune missing value", lambda t: ["tune", "tafl", "--gamma"], "needs a value"),
    ("tune malformed eps", lambda t: ["tune", "tafl", "--eps", "2/0"], "malformed epsilon"),
    ("tune eps zero step", lambda t: ["tune", "tafl", "--eps", "2/255:8/255:0"], "step"),
    ("tune unknown search", lambda t: ["tune", "tafl", "--gamma", "1", "--search", "bayes", *DRY], "unknown search"),
    ("tune bad test eps", lambda t: ["tune", "tafl", "--test-eps", "x/255", *DRY], "not a number|malformed epsilon"),
    ("tune zero samples", lambda t: ["tune", "tafl", "--samples", "0", *DRY], "samples"),
    ("tune device tpu", lambda t: ["tune", "tafl", "--device", "tpu", *DRY], "tpu"),
    ("tune unknown attack", lambda t: ["tune", "tafl", "--attacks", "laser", *DRY], "laser"),
    ("tune zero shot", lambda t: ["tune", "tafl", "--k-shot", "0", *DRY], "k-shot|k_shot"),
    ("tune resume nothing", lambda t: ["tune", "tafl", "--resume", "--output", "/no/such/sweep"], "nothing to resume"),
    # episodes, report, data
    ("episodes malformed eps", lambda t: ["episodes", "--output", "/tmp/never", "--eps", "foo"], "malformed epsilon"),
    ("episodes unknown split", lambda t: ["episodes", "--output", "/tmp/never", "--split", "nope"], "unknown split"),
    ("report missing folder", lambda t: ["report", "/no/such/sweep"], "no summary.parquet"),
    ("report corrupt summary", lambda t: ["report", _corrupt_sweep(t)], "summary.parquet"),
    ("report truncated summary", lambda t: ["report", _truncated_sweep(t)], "summary.parquet"),
    ("report out under a file", lambda t: ["report", _truncated_sweep(t), "--out", _file(t) + "/r"], "summary.parquet|cannot"),
    ("data check bad crc", lambda t: ["data", "check", "--data-root", _bad_crc_zip(t), "omniglot"], "CRC|corrupt|bad"),
    ("data check zip is a folder", lambda t: ["data", "check", "--data-root", _zip_is_folder(t), "omniglot"], "folder|not a zip|zip"),
    ("data prepare unknown dataset", lambda t: ["data", "prepare", "nope"], "nope"),
    ("resume other budget", lambda t: ["sweep", "--resume", "--output", _recorded_sweep(t), "--budget", "paper"], "--budget paper"),
    ("resume other seed", lambda t: ["sweep", "--resume", "--output", _recorded_sweep(t), "--seed", "3"], "--seed 3"),
    ("resume other dataset", lambda t: ["sweep", "--resume", "--output", _recorded_sweep(t), "--dataset", "omniglot"], "--dataset omniglot"),
    ("resume explicit default budget", lambda t: ["sweep", "--resume", "--output", _recorded_sweep(t), "--budget", "quick"], "--budget quick"),
    ("resume other grid", lambda t: ["sweep", "--resume", "--output", _recorded_sweep(t), "--grid", "paper-tables"], "--grid paper-tables"),
    ("resume with eps", lambda t: ["sweep", "--resume", "--output", _recorded_sweep(t), "--eps", "8/255"], "--eps"),
    ("tune resume explicit default seed", lambda t: ["tune", "tafl", "--resume", "--output", _recorded_tune(t), "--seed", "0"], "--seed 0"),
    ("tune resume other budget", lambda t: ["tune", "tafl", "--resume", "--output", _recorded_tune(t), "--budget", "quick"], "--budget quick"),
    ("tune resume new hyper-parameter", lambda t: ["tune", "tafl", "--resume", "--output", _recorded_tune(t), "--gamma", "1,2"], "--gamma"),
    ("tune resume other k-shot", lambda t: ["tune", "tafl", "--resume", "--output", _recorded_tune(t), "--k-shot", "5"], "--k-shot"),
    ("sweep resume of a tune folder", lambda t: ["sweep", "--resume", "--output", _recorded_tune(t)], "advmeta tune tafl --resume"),
    ("tune resume other method", lambda t: ["tune", "maml", "--resume", "--output", _recorded_tune(t)], "search over tafl"),
    ("resume with methods", lambda t: ["sweep", "--resume", "--output", _recorded_sweep(t), "--methods", "maml"], "--methods"),
    ("negative seed", lambda t: ["sweep", "--grid", "tafl", "--seed", "-1", *DRY], "--seed"),
    ("tune negative learning rate", lambda t: ["tune", "maml", "--inner-lr", "-1", *DRY], "inner-lr"),
    ("tune negative steps", lambda t: ["tune", "maml", "--inner-steps", "-2", *DRY], "inner-steps"),
    ("dead address", lambda t: ["sweep", "--grid", "tafl", "--dataset", "glyphs", "--output", str(t / "o"),
                                "--address", "127.0.0.1:1", "--budget", "smoke", "--eps", "8/255"], "no Ray cluster answers"),
    ("malformed address", lambda t: ["tune", "tafl", "--dataset", "glyphs", "--output", str(t / "o"),
                                     "--address", "nowhere", "--budget", "smoke"], "use host:port"),
]


@pytest.mark.parametrize(("name", "build", "message"), CASES, ids=[c[0] for c in CASES])
def test_malformed_input_exits_2_with_one_line(name: str, build: Callable[[Path], list[str]], message: str,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ADVMETA_NO_DOWNLOAD", "1")
    args = build(tmp_path)
    monkeypatch.setattr(sys, "argv", ["advmeta", *args])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2, f"exit {info.value.code}: {err[-1500:]}"
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("dataset:", "note:", "ε of table",
                                                                                   "budget "))]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and len(lines[0]) < 400
    assert re.search(message, lines[0]), lines[0]


def test_there_are_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60
