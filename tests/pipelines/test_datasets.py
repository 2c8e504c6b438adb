"""datasets.yaml validation: every user mistake is one clear line naming the key path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines.core.config import ConfigError
from pipelines.datasets import load_corpus


def write(tmp_path: Path, corpus: dict) -> Path:
    (tmp_path / "m.csv").write_text("")
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump({"corpora": {"demo": corpus}}))
    return path


def source(**overrides) -> dict:
    base = {"name": "as", "format": "audioset", "manifest": "m.csv", "fetch": {"backend": "youtube"}}
    return {**base, **overrides}


def error_of(tmp_path: Path, corpus: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        load_corpus(write(tmp_path, corpus))
    return str(caught.value)


def test_a_valid_corpus_resolves_paths_against_the_config_folder(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    corpus = load_corpus(write(tmp_path, {"output": "data/demo", "sources": [source()]}))
    assert corpus.output == tmp_path / "data" / "demo"
    assert corpus.config.sources[0].manifest == tmp_path / "m.csv"
    assert corpus.config.media.sample_rate == 48000 and corpus.config.media.frames == 4
    assert len(corpus.config_hash) == 64


def test_config_hash_ignores_where_the_config_lives(tmp_path):
    block = {"output": "out", "sources": [source()]}
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    assert (
        load_corpus(write(tmp_path / "a", block)).config_hash == load_corpus(write(tmp_path / "b", block)).config_hash
    )


@pytest.mark.parametrize(
    ("corpus", "expected"),
    [
        (
            {"output": "o", "sources": [source(manifset="m.csv")]},
            "corpora.demo.sources[0]: unknown key 'manifset' (did you mean 'manifest'?)",
        ),
        (
            {"output": "o", "sources": [source(format="audiosett")]},
            "corpora.demo.sources[0]: Input tag 'audiosett' found using 'format' does not match any of the expected tags: 'audiocaps', 'audioset'",
        ),
        (
            {"output": "o", "sources": [source(fetch={"backnd": "youtube"})]},
            "corpora.demo.sources[0].fetch: required key 'backend' is missing (one of: http, local, youtube); found 'backnd'",
        ),
        (
            {"output": "o", "sources": [source(fetch={"backend": "ftp"})]},
            "corpora.demo.sources[0].fetch: Input tag 'ftp' found using 'backend' does not match any of the expected tags",
        ),
        (
            {"output": "o", "sources": [source(manifest="nope.csv")]},
            "corpora.demo.sources[0].manifest: file not found:",
        ),
        (
            {"output": "o", "sources": [source()], "media": {"sample_rate": "fast"}},
            "corpora.demo.media.sample_rate: Input should be a valid integer",
        ),
        ({"output": "o", "sources": [source(), source()]}, "source names must be unique; repeated: as"),
        ({"output": "o", "sources": [source(fetch=None)]}, "sources[0] (as): a `fetch:` block is required"),
        ({"sources": [source()]}, "corpora.demo.output: required key is missing"),
        (
            {"output": "o", "sources": [source()], "exclude": [{"ids": "missing.txt"}]},
            "corpora.demo.exclude[0].ids: file not found",
        ),
    ],
)
def test_mistakes_are_named_by_key_path(tmp_path, corpus, expected):
    if corpus["sources"][0].get("fetch", 1) is None:
        corpus["sources"][0].pop("fetch")
    assert expected in error_of(tmp_path, corpus)


def test_every_problem_is_reported_at_once(tmp_path):
    message = error_of(
        tmp_path, {"output": "o", "sources": [source(manifset="m.csv"), source(name="b", format="nope")]}
    )
    assert "(2 problem(s))" in message and "sources[0]" in message and "sources[1]" in message


def test_unknown_corpus_lists_the_valid_ones(tmp_path):
    path = write(tmp_path, {"output": "o", "sources": [source()]})
    with pytest.raises(ConfigError, match=r"unknown corpus 'mine'; valid corpora: demo"):
        load_corpus(path, "mine")


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("corpora: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_corpus(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_corpus(tmp_path / "absent.yaml")


def test_an_unknown_key_does_not_hide_the_other_problems_of_its_block(tmp_path):
    """Issue 14, item 13: one typo used to be the only problem reported for its block."""
    media = {"sample_rat": 48000, "frames": -1, "frame_size": 3, "timeout": "x", "max_duration": 0}
    fetch = {"backend": "http", "timout": 3, "retry": {"attempts": 0, "backof": 1}}
    message = error_of(tmp_path, {"output": "o", "mdia": {}, "media": media, "sources": [source(fetch=fetch, limt=3)]})
    lines = message.splitlines()[1:]
    assert "(10 problem(s))" in message and len(lines) == 10
    for expected in (
        "corpora.demo: unknown key 'mdia' (did you mean 'media'?)",
        "corpora.demo.media: unknown key 'sample_rat' (did you mean 'sample_rate'?)",
        "corpora.demo.media.frames:",
        "corpora.demo.media.frame_size:",
        "corpora.demo.media.timeout:",
        "corpora.demo.media.max_duration:",
        "corpora.demo.sources[0]: unknown key 'limt' (did you mean 'limit'?)",
        "corpora.demo.sources[0].fetch: unknown key 'timout' (did you mean 'timeout'?)",
        "corpora.demo.sources[0].fetch.retry: unknown key 'backof' (did you mean 'backoff'?)",
        "corpora.demo.sources[0].fetch.retry.attempts:",
    ):
        assert any(line.strip().startswith(expected) for line in lines), expected


def test_a_corpus_named_twice_is_an_error_not_last_one_wins(tmp_path):
    """Issue 14, item 13: YAML keeps the last of two equal keys; datasets.yaml may not have them."""
    (tmp_path / "m.csv").write_text("")
    block = json.dumps({"output": "o", "sources": [source()]})  # one line of flow YAML
    path = tmp_path / "datasets.yaml"
    path.write_text(f"corpora:\n  demo: {block}\n  other: {block}\n  demo: {block}\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'demo' at line 4 \(first at line 2\)"):
        load_corpus(path)
    path.write_text(f"corpora:\n  demo: &d {block}\n  other:\n    <<: *d\n    output: o2\n")
    assert load_corpus(path, "other").output == tmp_path / "o2"  # a merged key may be overridden
