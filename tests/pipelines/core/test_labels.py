"""Event counts for the curriculum: hierarchy-aware, per Diffsound's single/multi-event split."""

from __future__ import annotations

from pipelines.core.labels import event_count
from pipelines.core.ontology import load_ontology
from pipelines.core.records import LabelRef

ONTOLOGY = load_ontology()


def labels(*names: str) -> list[LabelRef]:
    return [LabelRef(mid=ONTOLOGY.mid_for_name(name), name=name) for name in names]


def test_a_class_with_its_ancestors_is_one_event():
    assert event_count(labels("Church bell", "Bell", "Musical instrument", "Music"), ONTOLOGY) == 1


def test_unrelated_classes_are_separate_events():
    assert event_count(labels("Siren", "Rain", "Speech"), ONTOLOGY) == 3


def test_free_text_labels_count_by_distinct_name():
    assert (
        event_count([LabelRef(mid=None, name="people marching"), LabelRef(mid=None, name="People Marching")], ONTOLOGY)
        == 1
    )


def test_no_labels_is_zero_events():
    assert event_count([], ONTOLOGY) == 0
