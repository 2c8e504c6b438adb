"""Beam pipeline options for every job: what follows `--` on the command line, as Beam parses it."""

from __future__ import annotations

from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

# Runners Beam ships but does not know by name (the class path always works).
RUNNER_PATHS = {"DaskRunner": "apache_beam.runners.dask.dask_runner.DaskRunner"}


def pipeline_options(beam_args: Sequence[str] = ()) -> PipelineOptions:
    """Beam's own flags (`--runner=…`, `--job_endpoint=…`, …); without `--runner` the FnApiRunner
    (the DirectRunner would first try to download the Prism runner). `--runner=DaskRunner` names
    Beam's Dask runner (needs `dask` and `distributed`; docs/runners.md)."""
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = "FnApiRunner"
    standard.runner = RUNNER_PATHS.get(standard.runner, standard.runner)
    return options
