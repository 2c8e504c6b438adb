"""How many distinct sound events a clip holds: the curriculum's single- vs multi-event split.

Diffsound (§IV-C and Algorithm 3) trains on single-event clips first and multi-event clips
after. A clip's labels often name one event several times over the ontology's hierarchy — FSD50K
labels a church bell `Church_bell, Bell, Musical_instrument, Music` — so the count is the number of
labels that are not an ancestor of another label of the same clip. Labels without a mid (VGGSound's
free-text labels) count once per distinct name. Strong labels (AudioSet's timed events) count their
distinct mids the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.core.ontology import Ontology
from pipelines.core.records import LabelRef


def event_count(labels: Iterable[LabelRef], ontology: Ontology) -> int:
    mids = {label.mid for label in labels if label.mid}
    names = {label.name.casefold() for label in labels if not label.mid}
    covered = {ancestor for mid in mids if mid in ontology for ancestor in ontology.ancestors(mid)}
    return len(mids - covered) + len(names)
