"""Stage 4, report: the caption-quality report (docs/report.md). `job.build_report` writes it;
`data.collect` computes report.json's figures; the renderer draws the page."""
