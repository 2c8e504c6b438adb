"""The caption-quality report: `data.collect` computes report.json's figures; the renderer draws the page."""
