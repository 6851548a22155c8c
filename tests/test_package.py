"""The package's shape: installable layout, no Ray/Typer in the core, CLI entry points."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _declared_packages() -> set[str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return set(data["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_declared() -> None:
    mapping = {"advmeta": REPO / "advmeta", "advmeta.tune": REPO / "tune", "advmeta.cli": REPO / "cli"}
    found = set()
    for prefix, root in mapping.items():
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root).parts
            if "__pycache__" in rel:
                continue
            found.add(".".join((prefix, *rel)))
    assert found <= _declared_packages(), f"missing from pyproject packages: {sorted(found - _declared_packages())}"


def test_no_top_level_tune_or_cli_package_is_installed() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert all(p.startswith("advmeta") for p in data["tool"]["setuptools"]["packages"])


def test_core_import_does_not_pull_ray_or_typer() -> None:
    code = (
        "import sys, advmeta, advmeta.results, advmeta.registry, advmeta.env;"
        "import importlib, pkgutil;"
        "[importlib.import_module('advmeta.' + m.name) for m in pkgutil.iter_modules(advmeta.__path__)"
        " if m.name not in ('tune', 'cli', '__main__') and not m.name.startswith('_')];"
        "bad = [m for m in ('ray', 'typer') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_entry_points_work() -> None:
    for cmd in ([sys.executable, "-m", "advmeta", "--help"], [str(Path(sys.executable).parent / "advmeta"), "--help"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO.parent)
        assert proc.returncode == 0, proc.stderr
        assert "sweep" in proc.stdout or "Usage" in proc.stdout
