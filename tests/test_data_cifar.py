"""CIFAR-FS, FC100, CIFAR-10 and CIFAR-100 on small pickles written in the official format."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

import advmeta.data.download as download
from advmeta.data import EpisodeSampler, EpisodeSpec, load_classification, load_fewshot
from advmeta.data._cifar_splits import CIFAR_FS, FC100
from advmeta.errors import CorruptDataError, DataNotFoundError

FINE = sorted(n for s in CIFAR_FS.values() for n in s)  # CIFAR-100's 100 fine names, alphabetical
COARSE = [f"super{i}" for i in range(20)]
TRAIN_PER, TEST_PER = 5, 2


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.delenv("ADVMETA_DATA", raising=False)
    monkeypatch.delenv("ADVMETA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "usercache"))
    monkeypatch.setenv("ADVMETA_NO_DOWNLOAD", "1")


def coarse_of(fine: int) -> int:
    return (fine * 7) % 20  # any fixed map with 5 fine classes per superclass


def pixel_rows(labels: list[int]) -> np.ndarray:
    # image i: R plane = label, G plane = 100 + position, B plane = 255 (checks the channel layout)
    n = len(labels)
    data = np.empty((n, 3072), dtype=np.uint8)
    data[:, :1024] = np.array(labels)[:, None]
    data[:, 1024:2048] = (100 + np.arange(n) % 100)[:, None]
    data[:, 2048:] = 255
    return data


def dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the official files are Python-2 pickles with bytes keys


def make_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    dump(folder / "meta", {b"fine_label_names": [n.encode() for n in FINE],
                           b"coarse_label_names": [n.encode() for n in COARSE]})
    for part, per in (("train", TRAIN_PER), ("test", TEST_PER)):
        fine = [c for _ in range(per) for c in range(100)]
        dump(folder / part, {b"filenames": [b"x.png"] * len(fine), b"batch_label": part.encode(),
                             b"fine_labels": fine, b"coarse_labels": [coarse_of(c) for c in fine],
                             b"data": pixel_rows(fine)})
    return folder


def make_cifar10(root: Path, per_batch: int = 20) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    dump(folder / "batches.meta", {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog",
                                                    b"frog", b"horse", b"ship", b"truck"], b"num_vis": 3072})
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [i % 10 for i in range(per_batch)]
        dump(folder / name, {b"batch_label": name.encode(), b"labels": labels, b"data": pixel_rows(labels),
                             b"filenames": [b"x.png"] * per_batch})
    return folder


def test_cifar_fs_split(tmp_path):
    make_cifar100(tmp_path)
    ds = load_fewshot("cifar-fs", data_root=tmp_path)
    assert ds.image_shape == (3, 32, 32)
    names = {s: ds.split(s).class_names for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in names.items()} == {"train": 64, "val": 16, "test": 20}
    assert names["train"] == list(CIFAR_FS["train"])
    assert not set(names["train"]) & set(names["val"]) and not set(names["val"]) & set(names["test"])
    split = ds.split("test")
    assert split.num_images(0) == TRAIN_PER + TEST_PER  # train and test images pooled per class
    imgs = split.images(3, range(split.num_images(3)))
    assert (imgs[:, 0] == FINE.index(names["test"][3])).all()  # R plane carries the fine label
    assert (imgs[:, 2] == 255).all()
    ep = EpisodeSampler(ds, "train", EpisodeSpec(5, 1, 5), seed=0).sample([0])
    assert ep.query_x.shape == (1, 25, 3, 32, 32) and float(ep.query_x.max()) == 1.0


def test_fc100_split_by_superclass(tmp_path):
    make_cifar100(tmp_path)
    ds = load_fewshot("fc100", data_root=tmp_path)
    for s, n in (("train", 60), ("val", 20), ("test", 20)):
        split = ds.split(s)
        assert split.num_classes == n
        assert {coarse_of(FINE.index(c)) for c in split.class_names} == set(FC100[s])
    assert not set(ds.split("train").class_names) & set(ds.split("test").class_names)


def test_cifar100_and_cifar10_classification(tmp_path):
    make_cifar100(tmp_path)
    make_cifar10(tmp_path)
    c100 = load_classification("cifar100", data_root=tmp_path)
    assert c100.train_x.shape == (100 * TRAIN_PER, 3, 32, 32) and c100.test_x.shape == (100 * TEST_PER, 3, 32, 32)
    assert c100.num_classes == 100 and (c100.train_x[:, 0, 0, 0] == c100.train_y).all()
    c10 = load_classification("cifar10", data_root=tmp_path)
    assert c10.train_x.shape == (100, 3, 32, 32) and c10.test_x.shape == (20, 3, 32, 32)
    assert c10.class_names[0] == "airplane" and c10.train_y.dtype == np.int64
    assert (c10.train_x[:, 0, 5, 5] == c10.train_y).all() and (c10.train_x[:, 2] == 255).all()
    small = load_classification("cifar10", data_root=tmp_path, image_size=16)
    assert small.train_x.shape == (100, 3, 16, 16)


def test_missing_cifar(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"cifar-100-python.*train, test, meta|train, test, meta") as err:
        load_fewshot("cifar-fs", data_root=tmp_path)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)
    with pytest.raises(DataNotFoundError, match="data_batch_1"):
        load_classification("cifar10", data_root=tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "shape", "labels"])
def test_corrupt_cifar(tmp_path, damage):
    folder = make_cifar100(tmp_path)
    if damage == "truncate":
        (folder / "train").write_bytes((folder / "train").read_bytes()[:5000])
    elif damage == "shape":
        dump(folder / "test", {b"data": np.zeros((10, 100), np.uint8), b"fine_labels": [0] * 10,
                               b"coarse_labels": [0] * 10})
    else:
        dump(folder / "test", {b"data": np.zeros((10, 3072), np.uint8), b"fine_labels": [100] * 10,
                               b"coarse_labels": [0] * 10})
    with pytest.raises(CorruptDataError) as err:
        load_fewshot("fc100", data_root=tmp_path)
    assert "\n" not in str(err.value)


def test_download_verifies_md5_and_unpacks(tmp_path, monkeypatch):
    src = make_cifar100(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src, arcname="cifar-100-python")
    payload = buf.getvalue()
    monkeypatch.setenv("ADVMETA_NO_DOWNLOAD", "0")
    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(CorruptDataError, match="md5"):  # not the official tarball's bytes
        load_fewshot("cifar-fs", data_root=dest)
    assert not (dest / "cifar-100-python.tar.gz").exists()
    import hashlib

    remote = download.REMOTES["cifar-100-python.tar.gz"]
    monkeypatch.setitem(download.REMOTES, "cifar-100-python.tar.gz",
                        download.Remote(remote.filename, remote.urls, hashlib.md5(payload).hexdigest(), True))
    ds = load_fewshot("cifar-fs", data_root=dest)
    assert ds.info()["root"] == str(dest / "cifar-100-python") and ds.split("val").num_classes == 16
