"""The procedural glyphs dataset: enough classes, deterministic, jittered, no files."""

from __future__ import annotations

import numpy as np

from advmeta.data import load_fewshot, resolve_default_dataset
from advmeta.data.glyphs import render


def test_at_least_1000_disjoint_classes():
    ds = load_fewshot("glyphs")
    names = {s: set(ds.split(s).class_names) for s in ("train", "val", "test")}
    assert sum(len(v) for v in names.values()) >= 1000
    assert not (names["train"] & names["val"]) and not (names["train"] & names["test"])
    assert not (names["val"] & names["test"])
    assert ds.image_shape == (1, 28, 28) and ds.info()["files"] == []


def test_rendering_is_a_pure_function_of_class_and_index():
    a = render(123, [0, 5, 19])
    assert a.shape == (3, 1, 28, 28) and a.dtype == np.uint8
    assert np.array_equal(a, render(123, [0, 5, 19]))
    assert np.array_equal(a[1], render(123, [5])[0])  # batch-independent
    assert np.array_equal(load_fewshot("glyphs").split("train").images(123, [5])[0], a[1])


def test_instances_are_jittered_and_classes_differ():
    imgs = render(10, range(20)).astype(np.float32) / 255
    other = render(11, range(20)).astype(np.float32) / 255
    within = np.abs(imgs[:10] - imgs[10:]).mean()
    between = np.abs(imgs - other).mean()
    assert within > 0.01  # every drawing is different
    assert between > within  # but a class is more alike than two classes
    ink = (imgs > 0.5).mean(axis=(1, 2, 3))
    assert (ink > 0.02).all() and (ink < 0.5).all()  # visible strokes on a dark background


def test_image_size_parameter():
    ds = load_fewshot("glyphs", image_size=32)
    assert ds.image_shape == (1, 32, 32)
    assert ds.split("test").images(0, [0, 1]).shape == (2, 1, 32, 32)


def test_fallback_is_announced(tmp_path, monkeypatch):
    monkeypatch.delenv("ADVMETA_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    name, note = resolve_default_dataset(tmp_path / "empty")
    assert name == "glyphs"
    assert note is not None and "glyphs" in note and str(tmp_path / "empty") in note and "\n" not in note


def test_glyphs_classification_view(tmp_path, monkeypatch):
    from advmeta.data.glyphs import load_glyphs_cls

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cd = load_glyphs_cls(num_classes=10, images_per_class=10)
    assert cd.name == "glyphs-cls" and cd.num_classes == 10
    assert cd.train_x.shape == (80, 1, 28, 28) and cd.test_x.shape == (20, 1, 28, 28)
    assert np.array_equal(cd.test_x[:2], render(0, [8, 9]))  # held out: the last drawings of each class
    assert cd.train_y.tolist()[:9] == [0] * 8 + [1]
    again = load_glyphs_cls(num_classes=10, images_per_class=10)  # rendered once, then memory-mapped
    assert again.info["cache"] == cd.info["cache"]
