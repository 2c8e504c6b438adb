"""Beam pipeline options for every job: what follows `--` on the command line, as Beam parses it."""

from __future__ import annotations

from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions


def pipeline_options(beam_args: Sequence[str] = ()) -> PipelineOptions:
    """Beam's own flags (`--runner=…`, `--job_endpoint=…`, …); without `--runner` the FnApiRunner
    (the DirectRunner would first try to download the Prism runner)."""
    options = PipelineOptions(list(beam_args))
    if not options.view_as(StandardOptions).runner:
        options.view_as(StandardOptions).runner = "FnApiRunner"
    return options
