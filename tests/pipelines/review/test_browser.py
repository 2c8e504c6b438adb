"""The review flow in a real browser: Debian's chromium driven by Playwright (no browser download).

Open the review page, play a clip, judge 10 clips (one with a typed caption, one wrong), restart the
server and find the judgments kept (they are in SQLite), export, and re-run the shard stage: the
typed caption replaces the selected one and the wrong one falls back per the selection policy.
"""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
from audit_corpus import build_audit_corpus

from pipelines.datasets import load_corpus
from pipelines.report.job import build_report
from pipelines.review.server import ReviewServer
from pipelines.review.session import Review
from pipelines.shard import job as shard
from pipelines.shard.reader import iter_shard

MARKS = ["partly", "wrong", "correct", "correct", "partly", "correct", "wrong", "correct", "correct", "correct"]


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium")
    if not executable:
        pytest.skip("Debian's chromium is not installed (`apt-get install -y chromium`)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
        )
        yield browser
        browser.close()


def _open(browser, server):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "response",
        lambda response: errors.append(f"{response.status} {response.url}") if response.status >= 400 else None,
    )
    page.goto(server.url + "/review")
    page.wait_for_selector("body[data-ready=true]", timeout=20000)
    return page, errors


def _session(output, corpus):
    return Review(output, corpus.name, corpus.config_hash, margin=0.1)


def test_judge_restart_export_and_shard(tmp_path, browser):
    config = build_audit_corpus(tmp_path)
    corpus = load_corpus(config, "audit")
    output = tmp_path / "out"
    build_report(corpus)
    review = _session(output, corpus)
    assert len(review.design) >= 10

    with ReviewServer(review, output / "report", reviewer="ann") as server:
        page, errors = _open(browser, server)
        cards = page.locator("article.clip")
        assert cards.count() == len(review.design)
        # the report is served too, with its verdict first
        report = browser.new_page()
        report.goto(server.url + "/report/index.html")
        assert report.locator("section").first.get_attribute("id") == "verdict"
        report.close()
        # play the first clip; its spectrogram and frame load
        first = cards.nth(0)
        first.locator("audio").evaluate("a => a.play()")
        page.wait_for_function("() => document.querySelector('article.clip audio').currentTime > 0.2", timeout=20000)
        assert first.locator("img.spec").evaluate("i => i.complete && i.naturalWidth > 0")
        assert first.locator("img.frame").first.evaluate("i => i.complete && i.naturalWidth > 0")
        ids = [cards.nth(i).get_attribute("data-clip") for i in range(10)]
        first.locator("input.better").fill("rain on a tin roof")
        for i, mark in enumerate(MARKS):
            cards.nth(i).locator(f"button[data-mark={mark}]").click()
            page.wait_for_selector(f"article.clip[data-clip={ids[i]}][data-judgment={mark}]", timeout=10000)
        assert page.locator("#progress").inner_text().startswith("10 of")
        assert "caption precision" in page.locator("#estimate").inner_text()
        assert errors == []
        page.close()

    # A new server on the same database: the judgments are still there.
    with ReviewServer(_session(output, corpus), output / "report", reviewer="ann") as server:
        page, errors = _open(browser, server)
        kept = {
            c.get_attribute("data-clip"): c.get_attribute("data-judgment")
            for c in page.locator("article.clip").all()
            if c.get_attribute("data-judgment")
        }
        assert kept == dict(zip(ids, MARKS))
        assert page.locator(f"article.clip[data-clip={ids[0]}] input.better").input_value() == "rain on a tin roof"
        page.locator("#export").click()
        page.wait_for_selector("#export-result[data-done=true]", timeout=20000)
        assert errors == []
        page.close()

    judgments = pq.read_table(output / "review" / "judgments.parquet").to_pylist()
    assert [j["clip_id"] for j in judgments] == ids and {j["reviewer"] for j in judgments} == {"ann"}
    overrides = json.loads((output / "review" / "overrides.json").read_text())["overrides"]
    assert set(overrides) == {ids[0], ids[1], ids[6]}
    before = {s.key: s.meta for tar in sorted(output.glob("shards/*/*.tar")) for s in iter_shard(tar)}
    assert not before  # nothing sharded yet
    shard.run(corpus)
    samples = {s.key: s.meta for tar in sorted(output.glob("shards/*/*.tar")) for s in iter_shard(tar)}
    assert samples[ids[0]].selected_caption == "rain on a tin roof"
    assert samples[ids[0]].selected_expert == "human-review" and samples[ids[0]].review.reviewer == "ann"
    assert samples[ids[1]].review.action == "reselected"
    assert samples[ids[1]].selected_caption != samples[ids[1]].review.original_caption
    assert all(samples[c].review is None for c in ids[2:6])
