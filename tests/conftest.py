"""Shared fixtures: where the real data is, and a quiet, small torch."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

# The runner's tests use a fake, millisecond method family (tests/toy_family.py). It is registered
# through the environment, which the CLI subprocesses and Ray's workers inherit, with the repository
# root on their path so that they import it too.
_REPO = str(Path(__file__).resolve().parent.parent)
os.environ["ADVMETA_FAMILIES"] = "toy=tests.toy_family"
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO, os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module: tiny models gain nothing from a second thread, and on a
    shared CPU it costs a lot. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data_root() -> Path | None:
    value = os.environ.get("ADVMETA_DATA")
    return Path(value).expanduser().resolve() if value else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real-data folder named by ``ADVMETA_DATA``; skips the test when it is unavailable."""
    root = _data_root()
    if root is None:
        pytest.skip("real data not configured: set ADVMETA_DATA (e.g. ADVMETA_DATA=../shared/data)")
    if not root.is_dir():
        pytest.skip(f"real data folder {root} (from ADVMETA_DATA) does not exist")
    return root


@pytest.fixture(scope="session")
def omniglot_root(data_root: Path) -> Path:
    """``$ADVMETA_DATA/omniglot`` with both official zips; skips when absent."""
    root = data_root / "omniglot"
    missing = [f for f in ("images_background.zip", "images_evaluation.zip") if not (root / f).is_file()]
    if missing:
        pytest.skip(f"Omniglot not found: {', '.join(missing)} missing under {root}")
    return root


@pytest.fixture(scope="session")
def miniimagenet_root(data_root: Path) -> Path:
    """``$ADVMETA_DATA/miniimagenet`` (images/ + the Ravi CSVs); skips when absent."""
    root = data_root / "miniimagenet"
    if not (root / "images").is_dir() or not (root / "train.csv").is_file():
        pytest.skip(f"mini-ImageNet not found: images/ and train.csv expected under {root}")
    return root
