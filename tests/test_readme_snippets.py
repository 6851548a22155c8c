"""The README's Python snippets run as written: the pandas one on the committed results, returning
rows; the core's example (about a minute) as a slow test."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def snippet(marker: str) -> str:
    text = (REPO / "README.md").read_text()
    found = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```\n<!-- end {marker} -->", text, re.S)
    assert found, f"README.md has no {marker} block"
    return found.group(1)


def run(code: str) -> list[Any]:
    """Execute ``code`` statement by statement; the value of every bare expression, in order."""
    namespace: dict[str, Any] = {}
    values = []
    for node in ast.parse(code).body:
        if isinstance(node, ast.Expr):
            values.append(eval(compile(ast.Expression(node.value), "<README>", "eval"), namespace))
        else:
            exec(compile(ast.Module([node], type_ignores=[]), "<README>", "exec"), namespace)
    return values


def test_the_pandas_snippet_returns_rows_on_the_committed_results(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    values = run(snippet("readme-pandas"))
    assert len(values) == 2 and all(len(v) > 0 for v in values), values
    pivot = values[0]
    assert {"maml", "adml"} <= set(pivot.index.get_level_values("method")) and {"clean", "adv"} <= set(pivot.columns)


@pytest.mark.slow
def test_the_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_root: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(os.environ, "ADVMETA_DATA", str(data_root))
    values = run(snippet("readme-python-example"))
    shape, scores = values[0], values[1]
    assert tuple(shape) == (8, 5, 1, 28, 28)
    assert {a for a, _, _ in scores} >= {"pgd", "apgd-ce", "worst"}
    assert (tmp_path / "runs" / "tafl" / "checkpoint.pt").is_file()
