"""The review sample: stratified by source and caption origin, sized from a target margin of error.

Population: the clips whose annotation selected a caption (status ok). Strata: (source, origin), with
origin the kind of text selected — `human` (a caption written for the clip), `label` (label text,
Diffsound's MBTG text) or `expert` (captioner, retrieval, source text). Size: the sample a simple
random sample needs for a 95% interval of ±`margin` on a proportion in the worst case (p = 0.5),
n₀ = 1.96² · 0.25 / margin², with the finite-population correction n = n₀ / (1 + (n₀ − 1) / N);
allocated to strata in proportion to their size, at least `min_per_stratum` each (capped by the
stratum). Within a stratum the clips with the smallest sha256(seed:clip id) are drawn: random, and
the same sample for the same corpus and seed.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipelines.annotate.store import TABLE, AnnotationStore
from pipelines.ingest.cache import ClipCache

Z95 = 1.959963984540054
ORIGINS = {"human": "human", "label_text": "label", "mbtg": "label"}  # anything else: "expert"


def origin(expert: str | None) -> str:
    return ORIGINS.get(expert or "", "expert")


def sample_size(population: int, margin: float, z: float = Z95) -> int:
    if not 0 < margin < 1:
        raise ValueError(f"margin must be in (0, 1), got {margin}")
    if population <= 0:
        return 0
    n0 = z * z * 0.25 / (margin * margin)
    return min(population, math.ceil(n0 / (1 + (n0 - 1) / population)))


def allocate(sizes: dict[str, int], n: int, min_per_stratum: int) -> dict[str, int]:
    """Proportional allocation (largest remainders), at least `min_per_stratum`, never above a stratum's size."""
    total = sum(sizes.values())
    if total == 0:
        return dict.fromkeys(sizes, 0)
    exact = {name: n * size / total for name, size in sizes.items()}
    alloc = {name: math.floor(value) for name, value in exact.items()}
    left = n - sum(alloc.values())
    for name in sorted(exact, key=lambda k: (-(exact[k] - alloc[k]), k))[:left]:
        alloc[name] += 1
    return {name: min(sizes[name], max(alloc[name], min_per_stratum)) for name in sizes}


def draw_key(seed: int, clip_id: str) -> str:
    return hashlib.sha256(f"{seed}:{clip_id}".encode()).hexdigest()


def population(output: Path) -> list[dict[str, Any]]:
    """Every ok clip: id, source (clip.json), selected caption and its expert."""
    table = AnnotationStore(output).root / TABLE
    if not table.is_file():
        raise FileNotFoundError(f"no annotations under {table.parent}: run `t2a annotate` first")
    cache = ClipCache(output)
    found = []
    columns = ["clip_id", "status", "selected_caption", "selected_expert"]
    for batch in pq.ParquetFile(table).iter_batches(batch_size=8192, columns=columns):
        for row in batch.to_pylist():
            if row["status"] != "ok" or not row["selected_caption"]:
                continue
            try:
                source = cache.read_entry(row["clip_id"]).source
            except (OSError, ValueError):
                continue  # no longer in the clip cache: it cannot be listened to
            found.append({**row, "source": source, "origin": origin(row["selected_expert"])})
    return found


def stratified_sample(
    clips: list[dict[str, Any]], margin: float, seed: int = 0, min_per_stratum: int = 2
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """(the sampled clips in review order, {stratum: {population, sample_size}})."""
    strata: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for clip in clips:
        strata[f"{clip['source']}/{clip['origin']}"].append({**clip, "stratum": f"{clip['source']}/{clip['origin']}"})
    sizes = {name: len(members) for name, members in strata.items()}
    alloc = allocate(sizes, sample_size(len(clips), margin), min_per_stratum)
    chosen = []
    for name in sorted(strata):
        ordered = sorted(strata[name], key=lambda c: draw_key(seed, c["clip_id"]))
        chosen += ordered[: alloc[name]]
    # Review order interleaves the strata (by draw key), so stopping early still covers them all.
    chosen.sort(key=lambda c: draw_key(seed + 1, c["clip_id"]))
    summary = {name: {"population": sizes[name], "sample_size": alloc[name]} for name in sorted(strata)}
    return chosen, summary
