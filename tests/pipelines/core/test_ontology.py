from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.core.ontology import OntologyError, load_ontology
from pipelines.ingest.manifests.audioset import AudioSetSource


def write_ontology(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def entry(mid: str, name: str, children: list[str] = (), restrictions: list[str] = ()) -> dict:
    return {
        "id": mid,
        "name": name,
        "description": f"{name} sounds.",
        "citation_uri": "",
        "positive_examples": [],
        "child_ids": list(children),
        "restrictions": list(restrictions),
    }


def test_packaged_ontology_names_and_hierarchy():
    ontology = load_ontology()
    assert len(ontology) == 632
    assert "/m/09x0r" in ontology and "/m/nope" not in ontology
    assert ontology.name("/m/09x0r") == "Speech"
    assert ontology.mid_for_name("speech") == "/m/09x0r"
    assert ontology.mid_for_name("  ELECTRIC GUITAR ") == "/m/02sgy"
    assert ontology.mid_for_name("no such sound") is None
    assert ontology.parents("/m/09x0r") == ("/m/09l8g",)
    assert ontology.ancestors("/m/09x0r") == ("/m/09l8g", "/m/0dgw9r")
    assert "/m/09x0r" in ontology.children("/m/09l8g")
    assert ontology.restrictions("/m/0dgw9r") == ("abstract",)
    assert ontology.restrictions("/m/09x0r") == ()


def test_loads_once_per_path(tmp_path):
    path = write_ontology(tmp_path / "o.json", [entry("/m/a", "A")])
    assert load_ontology() is load_ontology()
    assert load_ontology(path) is load_ontology(tmp_path / "." / "o.json")
    assert load_ontology(path) is not load_ontology()


def test_ancestors_of_a_class_with_two_parents_nearest_first_each_once(tmp_path):
    path = write_ontology(
        tmp_path / "o.json",
        [
            entry("/m/root", "Root", ["/m/left", "/m/right"], ["abstract"]),
            entry("/m/left", "Left", ["/m/leaf"]),
            entry("/m/right", "Right", ["/m/leaf"]),
            entry("/m/leaf", "Leaf"),
        ],
    )
    ontology = load_ontology(path)
    assert ontology.parents("/m/leaf") == ("/m/left", "/m/right")
    assert ontology.ancestors("/m/leaf") == ("/m/left", "/m/right", "/m/root")
    assert ontology.ancestors("/m/root") == ()
    assert ontology.children("/m/root") == ("/m/left", "/m/right")


def test_unknown_mid_is_a_key_error_naming_it():
    with pytest.raises(KeyError, match="/m/nope"):
        load_ontology().name("/m/nope")
    with pytest.raises(KeyError, match="/m/nope"):
        load_ontology().ancestors("/m/nope")


@pytest.mark.parametrize("text", ["not json", '{"id": "/m/a"}', '[{"name": "no id"}]'])
def test_malformed_ontology_file(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(OntologyError, match="not an AudioSet ontology"):
        load_ontology(path)


def test_config_rejects_a_malformed_ontology_at_validation(tmp_path):
    (tmp_path / "m.csv").write_text("", encoding="utf-8")
    (tmp_path / "bad.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValidationError, match="not an AudioSet ontology"):
        AudioSetSource.model_validate(
            {"name": "as", "format": "audioset", "manifest": "m.csv", "ontology": "bad.json"},
            context={"base_dir": tmp_path},
        )
