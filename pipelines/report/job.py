"""`t2a report`: a corpus's status, annotations and shards → `<output>/report/` (index.html, assets/,
report.json), a self-contained folder that opens from disk offline (docs/report.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.core.config import ConfigError

if TYPE_CHECKING:
    from pipelines.datasets import Corpus

REPORT_DIR = "report"


def build_report(corpus: Corpus, listening_per_stratum: int = 2) -> Path:
    """Collect every figure (streamed over the annotations) and render the page; returns index.html."""
    from pipelines.report.data import collect
    from pipelines.report.render import render

    corpus.local_output("t2a report")
    annotations = corpus.output / "annotations" / "annotations.parquet"
    if not annotations.is_file():
        raise ConfigError(
            f"no annotations for corpus {corpus.name!r} under {annotations.parent}: run `t2a annotate` first"
        )
    threshold = corpus.config.annotate.selection.threshold if corpus.config.annotate else 0.0
    report = collect(
        corpus.output,
        corpus.name,
        corpus.config_hash,
        threshold,
        listening_per_stratum=listening_per_stratum,
        quality=corpus.config.quality,
    )
    return render(report, corpus.output / REPORT_DIR)
