"""Status summaries and the folding of failure reasons into kinds."""

from __future__ import annotations

import pytest

from pipelines.core.records import StatusRow
from pipelines.ingest.status import CountStatuses, build_summary, reason_key


def row(source: str, status: str, reason: str = "", rows: int = 1) -> StatusRow:
    return StatusRow(source=source, manifest="m.csv", line=2, status=status, reason=reason, rows=rows)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            "decoded 4.10 s of the 10.00 s expected (media lasts 14.10 s): truncated or corrupt",
            "decoded 1.00 s of the 9.50 s expected (media lasts 31.00 s): truncated or corrupt",
        ),
        (
            "bad start_seconds 'abc' (expected a number of seconds)",
            "bad start_seconds 'x1' (expected a number of seconds)",
        ),
        ("file not found in the mirror: /data/a/1.wav", "file not found in the mirror: /other/b/22.wav"),
        (
            "ffmpeg: [in#0 @ 0x55d41fe53840] Error opening input: Server returned 404 Not Found; Error opening input file http://a/x.mp4.",
            "ffmpeg: [in#0 @ 0x56162f2cb9c0] Error opening input: Server returned 404 Not Found; Error opening input file http://b/y.mp4.",
        ),
    ],
)
def test_reason_key_folds_particulars(a, b):
    assert reason_key(a) == reason_key(b)


def test_reason_key_keeps_kinds_apart():
    assert reason_key("HTTP 404 Not Found") != reason_key("no audio stream in the media")
    assert (
        reason_key("duplicate of yt_a-B_c1234Xy_5000 kept from as line 4", "yt_a-B_c1234Xy_5000")
        == "duplicate of <id> kept from as line N"
    )


def test_summary_counts_manifest_rows_by_source_and_status():
    fn = CountStatuses()
    left = fn.add_input(fn.create_accumulator(), row("a", "ok"))
    left = fn.add_input(left, row("a", "ok", rows=5))  # an AudioCaps clip stands for 5 rows
    right = fn.add_input(fn.create_accumulator(), row("b", "failed_permanent", "HTTP 404 Not Found"))
    right = fn.add_input(right, row("b", "rejected_row", "bad start_seconds 'x' (expected a number of seconds)"))
    counts = fn.extract_output(fn.merge_accumulators([left, right]))
    summary = build_summary(counts, {"run_id": "r1"})
    assert summary["rows"] == 8 and summary["totals"]["ok"] == 6
    assert summary["by_source"]["b"] == {**{k: 0 for k in summary["totals"]}, "failed_permanent": 1, "rejected_row": 1}
    assert {r["reason"] for r in summary["reasons"]} == {
        "HTTP N Not Found",
        "bad start_seconds '…' (expected a number of seconds)",
    }
    assert summary["run_id"] == "r1"


def test_unknown_status_is_refused():
    with pytest.raises(ValueError, match="unknown status"):
        row("a", "done")
