"""Standard test episodes: manifests by identity, their hash, the shipped ones, the sampler on them."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from advmeta.data import EpisodeSampler, EpisodeSpec, load_fewshot
from advmeta.data.manifest import builtin_manifests, export_manifest, image_names, read_manifest, resolve
from advmeta.errors import ConfigError, CorruptDataError, DataNotFoundError

# The shipped manifests' hashes: a change to an episode, a name or the canonical encoding changes
# them, and numbers measured on the old episodes would no longer be comparable with new ones.
SHIPPED = {
    "omniglot-test-5way-1shot": "8a8f6c947569172560067590831ddd0db4e076bb72c704b5e40042ba6bb124fc",
    "omniglot-test-5way-5shot": "54bf120b78d422ebd900768f012abb481fd1f1eee6592e56d508683453d7c19d",
    "miniimagenet-test-5way-1shot": "9fd9201eaaeeae6a6ed873b24c12892292edd9026711f53b068aa78ece568312",
    "miniimagenet-test-5way-5shot": "252cf51be2b63fa8e2a73f8ea66c389e08ee2ee4b32ab259a7f7ffb0f319f7c3",
}


def glyphs_manifest(tmp_path: Path, k_shot: int = 1, n: int = 6) -> Path:
    ds = load_fewshot("glyphs")
    m = export_manifest("glyphs", "test", EpisodeSpec(3, k_shot, 2), n, 0, ds.split("test").class_names,
                        image_names(ds, "test"), ds.split_scheme)
    return m.write(tmp_path / f"glyphs-{k_shot}.json")


def test_shipped_manifests_read_and_keep_their_hashes() -> None:
    assert set(builtin_manifests()) == set(SHIPPED)
    for name, digest in SHIPPED.items():
        m = read_manifest(name)
        assert m.hash == digest, name
        assert (m.split, m.n_way, m.q_query, len(m)) == ("test", 5, 15, 600) and m.k_shot in (1, 5)
        assert m.source["seed"] == 0 and "advmeta episodes export" in m.source["command"]


def test_a_manifest_whose_content_changed_is_refused(tmp_path: Path) -> None:
    doc = json.loads(gzip.decompress(builtin_manifests()["omniglot-test-5way-1shot"].read_bytes()))
    ep = doc["episodes"][3]  # the support image swapped with a query image: a valid, other episode
    ep["support"][0][0], ep["query"][0][0] = ep["query"][0][0], ep["support"][0][0]
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(CorruptDataError, match="does not match its hash"):
        read_manifest(path)
    path.write_text("{}")
    with pytest.raises(CorruptDataError, match="malformed"):
        read_manifest(path)
    with pytest.raises(DataNotFoundError, match="built-in: miniimagenet-test-5way-1shot"):
        read_manifest(tmp_path / "absent.json")


def test_the_hash_covers_the_content_not_the_provenance(tmp_path: Path) -> None:
    m = read_manifest(glyphs_manifest(tmp_path))
    assert m.hash == hashlib.sha256(m.canonical()).hexdigest()
    import dataclasses

    other = dataclasses.replace(m, source={"who": "another lab"}, origin="x")
    assert other.hash == m.hash
    swapped = dataclasses.replace(m, classes=(m.classes[0][::-1],) + m.classes[1:])
    assert swapped.hash != m.hash


def test_sampler_yields_the_manifests_episodes_and_refuses_others(tmp_path: Path) -> None:
    ds = load_fewshot("glyphs")
    m = read_manifest(glyphs_manifest(tmp_path))
    seeded = EpisodeSampler(ds, "test", m.spec, seed=0)
    fixed = EpisodeSampler(ds, "test", m.spec, seed=123, manifest=m)  # the seed no longer matters
    for i in range(len(m)):
        a, b = seeded.draw(i), fixed.draw(i)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    ep = fixed.sample(range(len(m)))
    names = image_names(ds, "test")
    cls = ds.split("test").class_names
    assert [cls[c] for c in ep.classes[2].tolist()] == list(m.classes[2])
    first = fixed.draw(2)[1][0, 0]
    assert names[int(ep.classes[2, 0])][first] == m.support[2][0][0]
    with pytest.raises(ConfigError, match="beyond the 6 episodes"):
        fixed.draw(6)
    with pytest.raises(ConfigError, match="k_shot 1 \\(not 5\\)"):
        EpisodeSampler(ds, "test", EpisodeSpec(3, 5, 2), manifest=m)
    with pytest.raises(ConfigError, match="split test \\(not val\\)"):
        EpisodeSampler(ds, "val", m.spec, manifest=m)
    with pytest.raises(ConfigError, match="queries"):
        EpisodeSampler(ds, "test", EpisodeSpec(3, 1, 3), manifest=m)


def test_another_datasets_manifest_is_refused(omniglot_root: Path, tmp_path: Path) -> None:
    m = read_manifest(glyphs_manifest(tmp_path))
    with pytest.raises(ConfigError, match="dataset glyphs \\(not omniglot\\)"):
        EpisodeSampler(load_fewshot("omniglot"), "test", m.spec, manifest=m)


def test_omniglot_manifests_are_the_seeded_episodes_of_the_installed_files(omniglot_root: Path) -> None:
    """Re-exported from the installed Omniglot (the command in the file), each shipped manifest is
    reproduced bit for bit, and the sampler draws on it what the seed-0 sampler draws."""
    ds = load_fewshot("omniglot")
    names = image_names(ds, "test")
    assert names[0][0].endswith(".png") and names[0][0].count("/") == 2
    for k in (1, 5):
        shipped = read_manifest(f"omniglot-test-5way-{k}shot")
        again = export_manifest("omniglot", "test", shipped.spec, 600, 0, ds.split("test").class_names, names,
                                ds.split_scheme)
        assert again.hash == shipped.hash
        classes, idx = resolve(shipped, ds)
        seeded = EpisodeSampler(ds, "test", shipped.spec, seed=0)
        for i in (0, 17, 599):
            c, j = seeded.draw(i)
            assert np.array_equal(classes[i], c) and np.array_equal(idx[i], j)


def test_miniimagenet_manifests_name_the_full_dataset(miniimagenet_root: Path) -> None:
    """The manifests name images of the full mini-ImageNet (600 per test class). Where they overlap
    with the 100-image subset installed here, the names are the subset's own files of the same
    classes; an evaluation on the subset is refused naming the first image it lacks."""
    import csv

    with open(miniimagenet_root / "test.csv", newline="") as f:
        subset = {r[0]: r[1] for r in list(csv.reader(f))[1:]}
    ds = load_fewshot("miniimagenet")
    for k in (1, 5):
        m = read_manifest(f"miniimagenet-test-5way-{k}shot")
        assert sorted({c for e in m.classes for c in e}) == sorted(set(subset.values()))
        seen: dict[str, set[str]] = {}
        for e in range(len(m)):
            for j, c in enumerate(m.classes[e]):
                for name in m.support[e][j] + m.query[e][j]:
                    assert re.fullmatch(r"n\d{16}\.jpg", name) and name.startswith(c), name
                    assert subset.get(name, c) == c, name  # a subset file of another class would be a misnaming
                    seen.setdefault(c, set()).add(name)
        assert all(len(v) <= 600 for v in seen.values())
        for c, names in seen.items():
            mine = {n for n, label in subset.items() if label == c}
            # ~2,400 draws of each class's 600 images name nearly all of them, the subset's 100 among them
            assert len(names & mine) >= 90, (c, len(names & mine))
            assert len(names - mine) >= 400, (c, len(names - mine))  # and the other 500 of the full set
        with pytest.raises(DataNotFoundError, match="is not in this copy of miniimagenet/test, which has 100 images"):
            EpisodeSampler(ds, "test", m.spec, manifest=m)


def test_two_fresh_processes_draw_identical_episodes(tmp_path: Path) -> None:
    path = glyphs_manifest(tmp_path)
    code = (
        "import hashlib, sys;"
        "from advmeta.data import EpisodeSampler, load_fewshot;"
        "from advmeta.data.manifest import read_manifest;"
        f"m = read_manifest({str(path)!r});"
        "ep = EpisodeSampler(load_fewshot('glyphs'), 'test', m.spec, seed=int(sys.argv[1]), manifest=m).sample(range(6));"
        "print(m.hash, hashlib.sha256(ep.support_x.numpy().tobytes() + ep.query_x.numpy().tobytes()).hexdigest())"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, seed], stdout=subprocess.PIPE, text=True)
             for seed in ("0", "7")]  # side by side: the import dominates
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1] and outs[0].split()[0] == read_manifest(path).hash


def test_export_command_writes_a_manifest(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from advmeta.cli.app import app

    out = tmp_path / "m.json.gz"
    res = CliRunner().invoke(app, ["episodes", "export", "--dataset", "glyphs", "--n-way", "3", "--k-shot", "1",
                                   "--q-query", "2", "--episodes", "4", "-o", str(out)])
    assert res.exit_code == 0, res.output
    m = read_manifest(out)
    assert len(m) == 4 and m.hash in res.output
    assert m.hash == export_manifest("glyphs", "test", EpisodeSpec(3, 1, 2), 4, 0,
                                     load_fewshot("glyphs").split("test").class_names,
                                     image_names(load_fewshot("glyphs"), "test"), m.split_scheme).hash
