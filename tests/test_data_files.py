"""Loaders on small files the tests write in the official layouts: missing, corrupt, cached, found."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import stat
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import advmeta.data.download as download
from advmeta.data import EpisodeSampler, EpisodeSpec, load_classification, load_fewshot, resolve_default_dataset
from advmeta.data.catalog import find
from advmeta.errors import ConfigError, CorruptDataError, DataNotFoundError

CHARS = {"background": {"Alpha": 3, "Beta": 2}, "evaluation": {"Gamma": 3}}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real data, no network, and a private per-user cache."""
    monkeypatch.delenv("ADVMETA_DATA", raising=False)
    monkeypatch.delenv("ADVMETA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "usercache"))
    monkeypatch.setenv("ADVMETA_NO_DOWNLOAD", "1")


def png(rng: np.random.Generator) -> bytes:
    a = np.ones((105, 105), dtype=bool)
    r, c = rng.integers(10, 80, 2)
    a[r:r + 20, c:c + 4] = False  # a black stroke, asymmetric so rotations differ
    a[r:r + 4, c:c + 12] = False
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def make_omniglot(root: Path, splits: bool = True) -> Path:
    folder = root / "omniglot"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    n = 0
    for part, alphabets in CHARS.items():
        with zipfile.ZipFile(folder / f"images_{part}.zip", "w") as zf:
            for alpha, count in alphabets.items():
                for ch in range(1, count + 1):
                    n += 1
                    for d in range(1, 21):
                        zf.writestr(f"images_{part}/{alpha}/character{ch:02d}/{n:04d}_{d:02d}.png", png(rng))
    if splits:
        lines = {"train": ["Alpha/character01", "Alpha/character02", "Beta/character01"],
                 "val": ["Beta/character02"], "test": ["Gamma/character01", "Gamma/character03"]}
        (folder / "splits" / "vinyals").mkdir(parents=True)
        for s, chars in lines.items():
            text = "".join(f"{c}/rot{r:03d}\n" for c in chars for r in (0, 90, 180, 270))
            (folder / "splits" / "vinyals" / f"{s}.txt").write_text(text)
    return folder


def test_omniglot_splits_and_rotations(tmp_path):
    make_omniglot(tmp_path)
    ds = load_fewshot("omniglot", data_root=tmp_path)
    assert ds.image_shape == (1, 28, 28)
    assert [ds.split(s).num_classes for s in ("train", "val", "test")] == [12, 4, 8]
    tr = ds.split("train")
    assert tr.class_names[:2] == ["Alpha/character01/rot000", "Alpha/character01/rot090"]
    up, turned = tr.images(0, range(20)), tr.images(1, range(20))
    assert np.array_equal(turned, np.rot90(up, 1, axes=(-2, -1)))  # rotated class = turned images
    assert not np.array_equal(up, turned)
    assert up.max() > 200 and up.min() == 0  # strokes bright on black
    ep = EpisodeSampler(ds, "train", EpisodeSpec(12, 1, 1), seed=0).sample([0])
    assert sorted(ep.classes[0].tolist()) == list(range(12))  # every rotation its own label
    info = ds.info()
    assert info["root"] == str(tmp_path / "omniglot") and len(info["checksums"]) == 2
    original = load_fewshot("omniglot", data_root=tmp_path, split_scheme="original")
    assert original.split("train").num_classes == 5 and original.split("test").num_classes == 3
    with pytest.raises(ConfigError, match="no split 'val'"):
        original.split("val")
    cls = load_classification("omniglot-cls", data_root=tmp_path)
    assert cls.num_classes == 5 and cls.train_x.shape == (80, 1, 28, 28) and cls.test_x.shape == (20, 1, 28, 28)


def test_omniglot_image_size(tmp_path):
    make_omniglot(tmp_path)
    assert load_fewshot("omniglot", data_root=tmp_path).image_shape == (1, 28, 28)
    assert load_fewshot("omniglot", data_root=tmp_path, image_size=20).image_shape == (1, 20, 20)  # own cache
    assert load_fewshot("omniglot", data_root=tmp_path).image_shape == (1, 28, 28)
    with pytest.raises(ConfigError):
        load_fewshot("omniglot", data_root=tmp_path, image_size=0)


def forbid_decoding(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("an image was decoded although the cache exists")

    monkeypatch.setattr(Image, "open", boom)


def test_cache_is_reused_without_decoding(tmp_path, monkeypatch):
    folder = make_omniglot(tmp_path)
    first = load_fewshot("omniglot", data_root=tmp_path)
    assert (folder / ".advmeta_cache").is_dir()  # next to the data: the folder is writable
    assert not [p for p in (folder / ".advmeta_cache").iterdir() if p.name.startswith(".tmp-")]
    forbid_decoding(monkeypatch)
    again = load_fewshot("omniglot", data_root=tmp_path)
    assert again.info()["cache"] == first.info()["cache"]
    assert np.array_equal(again.split("val").images(0, [3]), first.split("val").images(0, [3]))
    EpisodeSampler(again, "train", EpisodeSpec(5, 1, 5), seed=0).sample(range(3))  # sampling never decodes
    # new mtimes but the same bytes: found through the content checksum, still no decode
    for z in folder.glob("*.zip"):
        os.utime(z, (1, 1))
    assert load_fewshot("omniglot", data_root=tmp_path).info()["cache"] == first.info()["cache"]


def test_read_only_data_caches_in_user_dir(tmp_path):
    folder = make_omniglot(tmp_path)
    mode = folder.stat().st_mode
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        ds = load_fewshot("omniglot", data_root=tmp_path)
    finally:
        folder.chmod(mode)
    assert not (folder / ".advmeta_cache").exists()
    assert ds.info()["cache"].startswith(str(tmp_path / "usercache" / "advmeta"))
    assert "not writable" in ds.info()["cache_note"]


def test_missing_files_one_line_naming_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVMETA_DATA", str(tmp_path / "env"))
    with pytest.raises(DataNotFoundError) as err:
        load_fewshot("omniglot", data_root=tmp_path / "explicit")
    msg = str(err.value)
    assert "\n" not in msg and "images_background.zip" in msg and "images_evaluation.zip" in msg
    for place in (tmp_path / "explicit", tmp_path / "env", tmp_path / "usercache" / "advmeta"):
        assert str(place) in msg


def test_missing_split_file(tmp_path):
    make_omniglot(tmp_path, splits=False)
    with pytest.raises(DataNotFoundError, match=r"splits/vinyals/train\.txt") as err:
        load_fewshot("omniglot", data_root=tmp_path)
    assert "\n" not in str(err.value)
    assert load_fewshot("omniglot", data_root=tmp_path, split_scheme="original").split("train").num_classes == 5


def test_failed_download_is_the_one_line_not_found_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVMETA_NO_DOWNLOAD", "0")

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(DataNotFoundError) as err:
        load_fewshot("omniglot", data_root=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "images_background.zip" in msg and "download" in msg and "raw.githubusercontent" in msg


@pytest.mark.parametrize("damage", ["truncate", "crc", "garbage", "png"])
def test_corrupt_zip(tmp_path, damage):
    folder = make_omniglot(tmp_path)
    z = folder / "images_evaluation.zip"
    data = bytearray(z.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "crc":
        with zipfile.ZipFile(z) as zf:
            info = zf.infolist()[5]
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        data[start + info.compress_size // 2] ^= 0xFF
    elif damage == "garbage":
        data = bytearray(b"this is not a zip file" * 10)
    if damage == "png":  # a valid zip whose member is not an image
        with zipfile.ZipFile(z, "a") as zf:
            zf.writestr("images_evaluation/Gamma/character01/0099_21.png", b"\x89PNG not really")
    else:
        z.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError) as err:
        load_fewshot("omniglot", data_root=tmp_path)
    assert "images_evaluation.zip" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- mini-ImageNet


MINI = {"train": ["n01", "n02", "n03"], "val": ["n04", "n05"], "test": ["n06", "n07"]}


def make_mini(root: Path, per_class: int = 8, md5sums: bool = True) -> Path:
    folder = root / "miniimagenet"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    sums = []
    for split, classes in MINI.items():
        rows = ["filename,label"]
        for c in classes:
            for i in range(per_class):
                name = f"{c}{i:08d}.jpg"
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (84, 84, 3), dtype=np.uint8)).save(buf, format="JPEG")
                (folder / "images" / name).write_bytes(buf.getvalue())
                sums.append(f"{hashlib.md5(buf.getvalue()).hexdigest()}  images/{name}")
                rows.append(f"{name},{c}")
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    if md5sums:
        (folder / "MD5SUMS").write_text("\n".join(sums) + "\n")
    return folder


def test_mini_imagenet_images_and_csv(tmp_path):
    make_mini(tmp_path)
    ds = load_fewshot("miniimagenet", data_root=tmp_path)
    assert ds.image_shape == (3, 84, 84)
    assert [ds.split(s).class_names for s in ("train", "val", "test")] == list(MINI.values())
    assert ds.split("train").num_images(2) == 8
    ep = EpisodeSampler(ds, "val", EpisodeSpec(2, 2, 3), seed=0).sample([0, 1])
    assert ep.query_x.shape == (2, 6, 3, 84, 84) and 0 <= float(ep.query_x.min()) <= float(ep.query_x.max()) <= 1
    m64 = load_classification("miniimagenet-64", data_root=tmp_path)
    assert m64.num_classes == 3 and len(m64.train_x) + len(m64.test_x) == 24


def pickles_from(ds, folder: Path) -> None:
    folder.mkdir(parents=True)
    for s in ("train", "val", "test"):
        split = ds.split(s)
        data, class_dict = [], {}
        for c, name in enumerate(split.class_names):
            imgs = split.images(c, range(split.num_images(c))).transpose(0, 2, 3, 1)
            class_dict[name] = list(range(len(data), len(data) + len(imgs)))
            data.extend(imgs)
        with open(folder / f"mini-imagenet-cache-{s}.pkl", "wb") as f:
            pickle.dump({"image_data": np.stack(data), "class_dict": class_dict}, f)


def test_mini_imagenet_pickles_give_the_same_episodes(tmp_path):
    make_mini(tmp_path / "a")
    from_images = load_fewshot("miniimagenet", data_root=tmp_path / "a")
    pickles_from(from_images, tmp_path / "b" / "miniimagenet")
    from_pickles = load_fewshot("miniimagenet", data_root=tmp_path / "b")
    assert from_pickles.info()["form"] == "pickle"
    spec = EpisodeSpec(3, 2, 4)
    a = EpisodeSampler(from_images, "train", spec, seed=5).sample(range(4))
    b = EpisodeSampler(from_pickles, "train", spec, seed=5).sample(range(4))
    assert np.array_equal(a.query_x.numpy(), b.query_x.numpy())
    assert np.array_equal(a.classes.numpy(), b.classes.numpy())


def test_corrupt_pickle(tmp_path):
    make_mini(tmp_path / "a")
    pickles_from(load_fewshot("miniimagenet", data_root=tmp_path / "a"), tmp_path / "b" / "miniimagenet")
    p = tmp_path / "b" / "miniimagenet" / "mini-imagenet-cache-val.pkl"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(CorruptDataError, match="mini-imagenet-cache-val.pkl") as err:
        load_fewshot("miniimagenet", data_root=tmp_path / "b")
    assert "\n" not in str(err.value)


def test_corrupt_jpeg(tmp_path):
    folder = make_mini(tmp_path, md5sums=False)
    bad = folder / "images" / "n0500000003.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(CorruptDataError, match="n0500000003.jpg") as err:
        load_fewshot("miniimagenet", data_root=tmp_path)
    assert "\n" not in str(err.value)


def test_md5sums_mismatch(tmp_path):
    folder = make_mini(tmp_path)
    img = folder / "images" / "n0200000001.jpg"
    with Image.open(img) as im:
        arr = np.asarray(im).copy()
    arr[0, 0] ^= 0x40  # still a valid JPEG, but not the published bytes
    Image.fromarray(arr).save(img, format="JPEG")
    with pytest.raises(CorruptDataError, match="n0200000001.jpg fails its MD5SUMS"):
        load_fewshot("miniimagenet", data_root=tmp_path)


def test_mini_missing_image_and_bad_csv(tmp_path):
    folder = make_mini(tmp_path)
    (folder / "images" / "n0600000002.jpg").unlink()
    with pytest.raises(DataNotFoundError, match="n0600000002.jpg"):
        load_fewshot("miniimagenet", data_root=tmp_path)
    (folder / "test.csv").write_text("image;class\n")
    with pytest.raises(CorruptDataError, match="filename,label"):
        load_fewshot("miniimagenet", data_root=tmp_path)


# ---------------------------------------------------------------- roots


def test_data_root_precedence(tmp_path, monkeypatch):
    explicit, env, user = tmp_path / "explicit", tmp_path / "env", tmp_path / "usercache" / "advmeta"
    for r in (explicit, env, user):
        make_omniglot(r, splits=False)
    monkeypatch.setenv("ADVMETA_DATA", str(env))
    assert find("omniglot", explicit) == explicit / "omniglot"
    assert find("omniglot") == env / "omniglot"
    monkeypatch.delenv("ADVMETA_DATA")
    assert find("omniglot") == user / "omniglot"
    assert find("omniglot", explicit / "omniglot") == explicit / "omniglot"  # the dataset folder itself
    assert resolve_default_dataset(explicit) == ("omniglot", None)


def test_default_dataset_order(tmp_path):
    make_mini(tmp_path / "r", per_class=1)
    assert resolve_default_dataset(tmp_path / "r") == ("miniimagenet", None)
    make_omniglot(tmp_path / "r", splits=False)
    assert resolve_default_dataset(tmp_path / "r") == ("omniglot", None)


def test_unknown_names(tmp_path):
    with pytest.raises(ConfigError, match="known: .*omniglot"):
        load_fewshot("imagenet")
    with pytest.raises(ConfigError, match="split_scheme"):
        load_fewshot("omniglot", data_root=tmp_path, split_scheme="lake")
    with pytest.raises(ConfigError, match="cifar10"):
        load_classification("svhn")
