"""The README's walkthrough (examples/protonet_omniglot.py, `advmeta evaluate`, `advmeta leaderboard`):
its committed outputs agree with each other and with the README; the walkthrough itself runs as
written (slow: training takes minutes)."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results" / "example-protonet-omniglot"


def _block(marker: str) -> str:
    found = re.search(rf"<!-- {marker} -->\n(.*?)<!-- end {marker} -->", (REPO / "README.md").read_text(), re.S)
    assert found, f"README.md has no {marker} block"
    return found.group(1)


def test_the_example_imports_nothing_from_advmeta() -> None:
    tree = ast.parse((REPO / "examples" / "protonet_omniglot.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {str(n.module).split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "advmeta" not in imported and imported <= {"__future__", "argparse", "io", "time", "zipfile", "pathlib",
                                                      "numpy", "torch", "PIL"}, imported


def test_committed_outputs_agree_with_the_readme_and_each_other() -> None:
    from advmeta.data.manifest import read_manifest
    from advmeta.leaderboard import read_record

    board = (RESULTS / "leaderboard.md").read_text()
    assert _block("example-leaderboard").strip() == board.strip()
    weights = hashlib.sha256((RESULTS / "protonet_omniglot.pt").read_bytes()).hexdigest()
    for budget in ("smoke", "quick"):
        rec = read_record(RESULTS / budget / "record.json")
        assert rec["budget"] == budget and rec["model"]["weights_sha256"] == weights
        assert rec["episodes"]["hash"] == read_manifest("omniglot-test-5way-1shot").hash
        assert "examples/protonet_omniglot.py:model" in rec["command"]
    assert "| protonet-example" in board or "| ⚠ protonet-example" in board
    assert "clean 98.8 reported" in board


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(data_root: Path, tmp_path: Path) -> None:
    script = _block("example-commands").split("```bash\n", 1)[1].rsplit("```", 1)[0]
    script = script.replace("examples/", f"{REPO}/examples/").replace("results/", f"{REPO}/results/")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ADVMETA_DATA": str(data_root)}
    shim = f'advmeta() {{ "{sys.executable}" -m advmeta "$@"; }}\npython() {{ "{sys.executable}" "$@"; }}\n'
    proc = subprocess.run(["bash", "-c", "set -e\n" + shim + script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rec = json.loads((tmp_path / "runs" / "protonet-example-smoke" / "record.json").read_text())
    assert rec["results"]["32/255"]["clean"]["acc"] > 60  # a trained ProtoNet, far above 5-way chance
    assert "protonet-example" in (tmp_path / "runs" / "leaderboard.md").read_text()
