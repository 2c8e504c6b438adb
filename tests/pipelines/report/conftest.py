"""The report fixture (tests/support/report_fixture.py), built once per module, and its report."""

from __future__ import annotations

import pytest
from report_fixture import CONFIG_HASH, THRESHOLD, build_report_fixture

from pipelines.report.data import collect


@pytest.fixture(scope="module")
def report_output(tmp_path_factory):
    return build_report_fixture(tmp_path_factory.mktemp("report_output"))


@pytest.fixture(scope="module")
def report(report_output):
    return collect(report_output, "demo", CONFIG_HASH, THRESHOLD)
