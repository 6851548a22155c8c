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
    """Every module of the core — the planning package (``advmeta.plan``), the families, the
    calibration and the benchmark and experiment scripts included — imports with Ray, Typer and the
    dev-only ``higher`` absent (their imports are blocked, so any attempt fails)."""
    code = (
        "import sys; sys.modules.update(dict.fromkeys(('ray', 'typer', 'higher')));"
        "import advmeta, importlib, pkgutil;"
        "names = [m.name for m in pkgutil.walk_packages(advmeta.__path__, 'advmeta.')"
        " if m.name != 'advmeta.__main__'];"
        "[importlib.import_module(n) for n in names];"
        "assert {'advmeta.benchmarks.sweep', 'advmeta.experiments.l2l', 'advmeta.learners.tafl', 'advmeta.plan.grids',"
        " 'advmeta.plan.space', 'advmeta.plan.epsplan', 'advmeta.families.meta', 'advmeta.calibration.sweep'}"
        " <= set(names), names;"
        "print(len(names))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert int(proc.stdout) > 80


def test_every_module_under_tune_talks_to_ray() -> None:
    """tune/ is the Ray layer and only that: each of its modules (the package face aside) imports
    Ray; planning and a trial's own work live in the core (advmeta.plan, advmeta.families)."""
    import ast

    quiet = []
    for path in sorted((REPO / "tune").glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        names |= {str(node.module).split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        if "ray" not in names:
            quiet.append(path.name)
    assert quiet == [], f"modules under tune/ that do not use Ray (they belong in the core): {quiet}"


def test_cli_entry_points_work() -> None:
    for cmd in ([sys.executable, "-m", "advmeta", "--help"], [str(Path(sys.executable).parent / "advmeta"), "--help"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO.parent)
        assert proc.returncode == 0, proc.stderr
        assert "sweep" in proc.stdout or "Usage" in proc.stdout


def _import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports anywhere (top level, inside functions, under
    TYPE_CHECKING), read from the source: a lazy import is still a dependency."""
    import ast

    mods: dict[str, Path] = {}
    for folder, pkg in (("advmeta", "advmeta"), ("tune", "advmeta.tune"), ("cli", "advmeta.cli")):
        for path in (REPO / folder).rglob("*.py"):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            mods[".".join((pkg, *parts)).removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[mod] |= {n for n in names if n in mods and n != mod}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycles() -> None:
    assert _cycles(_import_graph()) == []
    # the check itself finds a cycle, lazy imports included
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
