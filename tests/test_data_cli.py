"""``advmeta data list | check | prepare``: output, exit codes and one-line errors."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from advmeta.cli.app import app, main


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.delenv("ADVMETA_DATA", raising=False)
    monkeypatch.delenv("ADVMETA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "usercache"))
    monkeypatch.setenv("ADVMETA_NO_DOWNLOAD", "1")


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["advmeta", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    return int(exit_.value.code or 0), out.out, out.err


def test_list_without_data_announces_glyphs(tmp_path):
    res = CliRunner().invoke(app, ["data", "list", "--data-root", str(tmp_path / "none")])
    assert res.exit_code == 0, res.output
    assert "omniglot" in res.output and "not found" in res.output
    assert "default dataset: glyphs" in res.output and str(tmp_path / "none") in res.output


def test_list_finds_a_dataset(tmp_path):
    from test_data_files import make_omniglot

    make_omniglot(tmp_path, splits=False)
    res = CliRunner().invoke(app, ["data", "list", "--data-root", str(tmp_path)])
    assert res.exit_code == 0 and str(tmp_path / "omniglot") in res.output
    assert "default dataset: omniglot" in res.output


def test_check_and_prepare(tmp_path):
    from test_data_files import make_omniglot

    make_omniglot(tmp_path)
    res = CliRunner().invoke(app, ["data", "prepare", "--data-root", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "omniglot: ready" in res.output and (tmp_path / "omniglot" / ".advmeta_cache").is_dir()
    res = CliRunner().invoke(app, ["data", "check", "omniglot", "--data-root", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "md5" in res.output and "omniglot: OK" in res.output and "every image decoded" in res.output


def test_missing_dataset_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "data", "prepare", "omniglot", "--data-root", str(tmp_path))
    assert code == 2
    assert err.startswith("error: omniglot: images_background.zip") and err.count("\n") == 1
    assert str(tmp_path) in err


def test_corrupt_dataset_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from test_data_files import make_omniglot

    folder = make_omniglot(tmp_path)
    (folder / "images_background.zip").write_bytes(b"PK\x03\x04 truncated")
    code, _, err = run_main(monkeypatch, capsys, "data", "check", "omniglot", "--data-root", str(tmp_path))
    assert code == 2 and "images_background.zip" in err and err.count("\n") == 1


def test_unknown_dataset_exit_2(monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "data", "check", "imagenet")
    assert code == 2 and "unknown dataset 'imagenet'" in err and "omniglot" in err
