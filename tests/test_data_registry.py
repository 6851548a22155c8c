"""Each dataset module registers its record (:class:`DatasetInfo`) next to its loader."""

from __future__ import annotations

from advmeta.data._registry import CLASSIFICATION, DATASET_INFO, FEWSHOT


def test_every_fewshot_dataset_has_a_record_and_every_record_names_a_loader() -> None:
    assert set(FEWSHOT.names()) <= set(DATASET_INFO.names()), "a few-shot dataset without register_info(...)"
    assert any(DATASET_INFO.get(n).built_in for n in FEWSHOT.names())  # the fallback default
    for name in DATASET_INFO.names():
        info = DATASET_INFO.get(name)
        assert info.name == name
        assert name in FEWSHOT or name in CLASSIFICATION, f"record {name!r} names no registered loader"
        assert info.classification is None or info.classification in CLASSIFICATION, name
        assert info.built_in or (info.folders and info.alternatives), f"{name}: where are its files?"
