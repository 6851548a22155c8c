"""The real datasets in $ADVMETA_DATA (full Omniglot, the mini-ImageNet subset); skipped without them.

The first load decodes every image into the per-user array cache (Omniglot ~11 s, mini-ImageNet
subset ~6 s on 2 busy cores); later loads, in this session and the next, memory-map it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from advmeta.data import EpisodeSampler, EpisodeSpec, load_classification, load_fewshot


@pytest.fixture(scope="module")
def omniglot(omniglot_root):
    return load_fewshot("omniglot", data_root=omniglot_root.parent)


@pytest.fixture(scope="module")
def mini(miniimagenet_root):
    return load_fewshot("miniimagenet", data_root=miniimagenet_root.parent)


def chars(names):
    return {n.rsplit("/", 1)[0] for n in names}


def test_omniglot_vinyals_split(omniglot):
    assert omniglot.image_shape == (1, 28, 28)
    sizes = {s: omniglot.split(s).num_classes for s in ("train", "val", "test")}
    assert sizes == {"train": 4112, "val": 688, "test": 1692}
    tr, va, te = (chars(omniglot.split(s).class_names) for s in ("train", "val", "test"))
    assert len(tr) + len(va) + len(te) == 1623
    assert not tr & va and not tr & te and not va & te  # no character in two splits, at any rotation
    assert all(omniglot.split("test").num_images(c) == 20 for c in range(1692))


def test_omniglot_rotations_are_distinct_classes(omniglot):
    split = omniglot.split("train")
    names = split.class_names
    c0 = names.index("Angelic/character01/rot000")
    for q in (1, 2, 3):
        cq = names.index(f"Angelic/character01/rot{90 * q:03d}")
        up, turned = split.images(c0, range(20)), split.images(cq, range(20))
        assert np.array_equal(turned, np.rot90(up, q, axes=(-2, -1)))
        assert not np.array_equal(turned, up)
    s = EpisodeSampler(omniglot, "train", EpisodeSpec(5, 1, 15), seed=0)
    ep = s.sample(range(8))
    assert ep.support_x.shape == (8, 5, 1, 28, 28) and ep.query_x.shape == (8, 75, 1, 28, 28)
    assert 0.0 == float(ep.support_x.min()) and float(ep.support_x.max()) == 1.0
    assert all(len(set(row.tolist())) == 5 for row in ep.classes)


def test_omniglot_original_split_and_classification(omniglot_root):
    ds = load_fewshot("omniglot", data_root=omniglot_root.parent, split_scheme="original")
    assert ds.split("train").num_classes == 964 and ds.split("test").num_classes == 659
    cls = load_classification("omniglot-cls", data_root=omniglot_root.parent)
    assert cls.num_classes == 964 and cls.train_x.shape == (964 * 16, 1, 28, 28)
    assert cls.test_x.shape == (964 * 4, 1, 28, 28)


CHILD = """
import hashlib, sys
from advmeta.data import EpisodeSampler, EpisodeSpec, load_fewshot
for name in ("omniglot", "miniimagenet"):
    ep = EpisodeSampler(load_fewshot(name, data_root=sys.argv[1]), "test", EpisodeSpec(5, 5, 15), seed=2024)
    ep = ep.sample([0, 17, 600])
    print(hashlib.sha256(ep.query_x.numpy().tobytes() + ep.support_x.numpy().tobytes()
                         + ep.classes.numpy().tobytes()).hexdigest())
"""


def test_real_episodes_deterministic_across_processes(omniglot, mini, data_root):
    here = []
    for ds in (omniglot, mini):
        ep = EpisodeSampler(ds, "test", EpisodeSpec(5, 5, 15), seed=2024).sample([0, 17, 600])
        here.append(hashlib.sha256(ep.query_x.numpy().tobytes() + ep.support_x.numpy().tobytes()
                                   + ep.classes.numpy().tobytes()).hexdigest())
    out = subprocess.run([sys.executable, "-c", CHILD, str(data_root)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == here


def test_mini_imagenet_ravi_split(mini):
    assert mini.image_shape == (3, 84, 84)
    names = {s: set(mini.split(s).class_names) for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in names.items()} == {"train": 64, "val": 16, "test": 20}
    assert not names["train"] & names["val"] and not names["train"] & names["test"]
    assert not names["val"] & names["test"]
    ep = EpisodeSampler(mini, "val", EpisodeSpec(5, 5, 15, n_unlabeled=5), seed=0).sample([0, 1])
    assert ep.query_x.shape == (2, 75, 3, 84, 84) and ep.unlabeled_x.shape == (2, 25, 3, 84, 84)
    assert 0.0 <= float(ep.query_x.min()) and float(ep.query_x.max()) <= 1.0
    m64 = load_classification("miniimagenet-64", data_root=mini.info()["root"])
    assert m64.num_classes == 64 and m64.image_shape == (3, 84, 84)


def test_second_load_does_not_decode(omniglot, mini, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("decoded an image although the cache exists")

    monkeypatch.setattr(Image, "open", boom)
    for name, ds in (("omniglot", omniglot), ("miniimagenet", mini)):
        again = load_fewshot(name, data_root=ds.info()["root"])
        assert again.info()["cache"] == ds.info()["cache"]
        EpisodeSampler(again, "train", EpisodeSpec(5, 1, 15), seed=1).sample(range(4))
