"""A small corpus in five manifest formats, served on loopback, for the job and CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from mini_corpus import MiniCorpus, build_mini_corpus

from demo.freesound_api import freesound_route
from demo.server import LoopbackServer


@pytest.fixture()
def mini(tmp_path: Path, media, monkeypatch) -> MiniCorpus:
    monkeypatch.setenv("FREESOUND_API_KEY", "demo-key")
    www = tmp_path / "www"
    www.mkdir()
    with LoopbackServer(www) as server:
        config = build_mini_corpus(tmp_path, server.url, media, {"mini": "out", "other": "out2"})
        server.routes["/apiv2/"] = freesound_route(www / "freesound" / "sounds.json")
        yield MiniCorpus(tmp_path, config, server)
