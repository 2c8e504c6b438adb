"""The AudioSet ontology: label mids ("/m/09x0r") to names ("Speech") and the class hierarchy.

The packaged copy (pipelines/data/audioset_ontology.json, see NOTICE.md there) is the default; a
config may point at another file with the same JSON layout.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator

from pipelines.core.config import LocalFile


class OntologyError(ValueError):
    """A file that is not an AudioSet ontology."""


@dataclass(frozen=True)
class Concept:
    mid: str
    name: str
    description: str = ""
    child_ids: tuple[str, ...] = ()
    restrictions: tuple[str, ...] = ()  # "abstract", "blacklist"


class Ontology:
    def __init__(self, concepts: Iterable[Concept]):
        self._concepts = {concept.mid: concept for concept in concepts}
        self._mids_by_name: dict[str, str] = {}
        self._parents: dict[str, list[str]] = {mid: [] for mid in self._concepts}
        for concept in self._concepts.values():
            self._mids_by_name.setdefault(concept.name.casefold(), concept.mid)
            for child in concept.child_ids:
                if child in self._parents:
                    self._parents[child].append(concept.mid)

    def __contains__(self, mid: object) -> bool:
        return mid in self._concepts

    def __len__(self) -> int:
        return len(self._concepts)

    def mids(self) -> list[str]:
        """Every class's mid, sorted."""
        return sorted(self._concepts)

    def concept(self, mid: str) -> Concept:
        try:
            return self._concepts[mid]
        except KeyError:
            raise KeyError(f"unknown AudioSet mid {mid!r}") from None

    def name(self, mid: str) -> str:
        return self.concept(mid).name

    def mid_for_name(self, name: str) -> str | None:
        return self._mids_by_name.get(name.strip().casefold())

    def parents(self, mid: str) -> tuple[str, ...]:
        self.concept(mid)
        return tuple(self._parents[mid])

    def ancestors(self, mid: str) -> tuple[str, ...]:
        """Every class above `mid`, nearest first, each once (a class may have several parents)."""
        found: list[str] = []
        frontier = list(self.parents(mid))
        while frontier:
            parent = frontier.pop(0)
            if parent not in found:
                found.append(parent)
                frontier.extend(self._parents[parent])
        return tuple(found)

    def children(self, mid: str) -> tuple[str, ...]:
        return self.concept(mid).child_ids

    def restrictions(self, mid: str) -> tuple[str, ...]:
        return self.concept(mid).restrictions


def load_ontology(path: Path | None = None) -> Ontology:
    """The ontology in `path`, or the packaged copy; parsed once per file."""
    return _load(None if path is None else str(Path(path).resolve()))


@functools.cache
def _load(path: str | None) -> Ontology:
    if path is None:
        file = resources.files("pipelines").joinpath("data", "audioset_ontology.json")
        where = "packaged audioset_ontology.json"
    else:
        file, where = Path(path), path
    try:
        return Ontology(_concept(entry) for entry in json.loads(file.read_text("utf-8")))
    except (ValueError, TypeError, KeyError) as error:
        raise OntologyError(
            f"{where}: not an AudioSet ontology ({error}); expected a JSON list of "
            f"{{id, name, description, child_ids, restrictions}} objects"
        ) from None


def _concept(entry: dict[str, Any]) -> Concept:
    return Concept(
        mid=str(entry["id"]),
        name=str(entry["name"]),
        description=str(entry.get("description", "")),
        child_ids=tuple(entry.get("child_ids", ())),
        restrictions=tuple(entry.get("restrictions", ())),
    )


def _valid_ontology(path: Path) -> Path:
    load_ontology(path)  # OntologyError is a ValueError: pydantic reports it under the key
    return path


# A config key naming an ontology file: it must exist and parse, so mistakes surface at validation.
OntologyFile = Annotated[LocalFile, AfterValidator(_valid_ontology)]
