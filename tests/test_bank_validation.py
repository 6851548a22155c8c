"""Episode banks carry their files' checksums; a damaged or doubly written bank is never served."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from advmeta.bank import MANIFEST, BankSpec, EpisodeBank, find_bank, verify_bank, write_bank

SPEC = BankSpec(dataset="glyphs", split="test", n_way=2, k_shot=1, q_query=1, seed=0, n_episodes=4, eps=("8/255",),
                surrogate="s", image_shape=(1, 4, 4), image_size=4)


def _batches(n: int = 4, per: int = 2, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for s in range(0, n, per):
        idx = np.arange(s, min(n, s + per))
        img = lambda k: rng.random((len(idx), k, 1, 4, 4), dtype=np.float32)  # noqa: E731
        out.append({"episode_index": idx, "eps": np.array(["8/255"] * len(idx)), "support_x": img(2), "query_x": img(2),
                    "support_adv_x": img(2), "query_adv_x": img(2), "support_y": np.tile([0, 1], (len(idx), 1)),
                    "query_y": np.tile([0, 1], (len(idx), 1)), "classes": np.tile([3, 5], (len(idx), 1))})
    return out


def _find(root: Path) -> EpisodeBank | None:
    return find_bank(str(root), dataset="glyphs", split="test", n_way=2, k_shot=1, q_query=1, seed=0,
                     eps=["8/255"], n_episodes=4, surrogate="s")


def test_a_written_bank_verifies_and_is_found(tmp_path: Path) -> None:
    write_bank(str(tmp_path / "banks" / "b"), SPEC, _batches())
    manifest = json.loads((tmp_path / "banks" / "b" / MANIFEST).read_text())
    assert len(manifest["files"]) == 2 and all(len(m["sha256"]) == 64 for m in manifest["files"].values())
    assert verify_bank(str(tmp_path / "banks" / "b")) is None
    bank = _find(tmp_path / "banks")
    assert bank is not None and bank.arrays([0, 3], "8/255")["support_x"].shape == (2, 2, 1, 4, 4)


@pytest.mark.parametrize("damage", ["flip_byte", "extra_file", "missing_file", "no_checksums", "bad_manifest"])
def test_a_damaged_bank_is_detected_and_not_served(tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "banks" / "b"
    write_bank(str(path), SPEC, _batches())
    part = sorted(path.glob("*.parquet"))[0]
    if damage == "flip_byte":
        data = bytearray(part.read_bytes())
        data[len(data) // 2] ^= 0xFF
        part.write_bytes(bytes(data))
    elif damage == "extra_file":  # what a second run writing the same bank left behind
        shutil.copy(part, path / "part-99999.parquet")
    elif damage == "missing_file":
        part.unlink()
    elif damage == "no_checksums":
        m = json.loads((path / MANIFEST).read_text())
        del m["files"]
        (path / MANIFEST).write_text(json.dumps(m))
    else:
        (path / MANIFEST).write_text("{")
    assert damage == "bad_manifest" or verify_bank(str(path)) is not None
    assert _find(tmp_path / "banks") is None
    if damage != "bad_manifest":
        assert "is not used" in capsys.readouterr().err


def test_regenerating_over_a_damaged_bank_gives_a_valid_one(tmp_path: Path) -> None:
    """What the sweep does (tune.banks.ensure_banks → generate(overwrite=True)): clear, rewrite, verify."""
    path = tmp_path / "banks" / "b"
    write_bank(str(path), SPEC, _batches())
    shutil.copy(sorted(path.glob("*.parquet"))[0], path / "part-99999.parquet")
    assert _find(tmp_path / "banks") is None
    for f in path.iterdir():
        f.unlink()
    write_bank(str(path), SPEC, _batches())
    assert verify_bank(str(path)) is None and _find(tmp_path / "banks") is not None
