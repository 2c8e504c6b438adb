"""The freesound reader against the loopback Freesound APIv2 emulator."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from demo.freesound_api import db_record, freesound_route
from demo.server import Fault, LoopbackServer, Request, Response
from pipelines.core.config import ConfigError
from pipelines.core.licences import licence_id
from pipelines.core.records import Caption, Clip, RejectedRow
from pipelines.ingest.manifests.base import FORMATS
from pipelines.ingest.manifests.freesound import (
    FreesoundCredentialsError,
    FreesoundError,
    FreesoundSource,
    read_freesound,
)

KEY = "s3cr3t-KEY-0123456789abcdef"
CC0 = "http://creativecommons.org/publicdomain/zero/1.0/"
BY_NC = "https://creativecommons.org/licenses/by-nc/4.0/"
CC0_SHORT = 'license:"Creative Commons 0" duration:[0 TO 30]'


def _sound(sound_id: int, name: str, tags: list[str], duration: float, license: str = CC0, **extra) -> dict:
    return db_record(sound_id, name, tags, license, duration, url=f"people/demo_user/sounds/{sound_id}/", **extra)


SOUNDS = [
    _sound(101, "Rain on a tin roof", ["rain", "roof"], 12.5),
    _sound(102, "Heavy rain storm", ["storm"], 45.0),  # too long for CC0_SHORT
    _sound(103, "Rain in the forest", ["forest"], 25.0),
    _sound(104, "Light drizzle", ["rain"], 20.0, license=BY_NC),  # wrong licence for CC0_SHORT
    _sound(105, "Rain on a window", ["window"], 8.0, description=""),
    _sound(106, "Dog barking", ["dog"], 3.0),
    _sound(107, "Rain gutter", ["gutter"], 30.0),
    _sound(108, "Wet street", ["street"], 14.0, description="Cars passing in the rain"),
]


def _emulator(root: Path) -> LoopbackServer:
    """An emulator whose `seen` lists every request the route answered, in order. Unlike
    `server.log`, written after the answer has gone out, `seen` is complete once a call returns."""
    route = freesound_route(SOUNDS, api_key=KEY)
    seen: list[Request] = []

    def recording(request: Request) -> Response:
        seen.append(request)
        return route(request)

    server = LoopbackServer(root, routes={"/apiv2/": recording})
    server.seen = seen
    return server


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    # One emulator for the tests without faults: stopping a LoopbackServer takes 0.5 s.
    with _emulator(tmp_path_factory.mktemp("www")) as server:
        yield server


@pytest.fixture()
def server(shared, monkeypatch):
    monkeypatch.setenv("FREESOUND_API_KEY", KEY)
    shared.seen.clear()
    return shared


@pytest.fixture()
def own_server(tmp_path, monkeypatch):
    """A server of the test's own, for faults and `server.log`."""
    monkeypatch.setenv("FREESOUND_API_KEY", KEY)
    with _emulator(tmp_path) as server:
        yield server


def _source(tmp_path: Path, server: LoopbackServer, **overrides) -> FreesoundSource:
    data = {
        "name": "fs",
        "format": "freesound",
        "api_base": f"{server.url}/apiv2",
        "requests_per_minute": 60000,
        "retry": {"attempts": 3, "backoff": 0.001, "max_backoff": 10},
        "timeout": 5,
        **overrides,
    }
    return FreesoundSource.model_validate(data, context={"base_dir": tmp_path})


def _paths(server: LoopbackServer) -> list[str]:
    return [request.path for request in server.seen]


def _statuses(server: LoopbackServer, path: str, count: int) -> list[int]:
    """Statuses of the requests for `path`, once `count` of them are logged (or after 2 s)."""
    deadline = time.monotonic() + 2
    while len(server.requests_for(path)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return [entry.status for entry in server.requests_for(path)]


def test_registered_as_a_manifest_format():
    assert FORMATS.get("freesound").config is FreesoundSource
    assert FORMATS.get("freesound").read is read_freesound


# --- query mode ------------------------------------------------------------------------------------


def test_query_with_filter_pages_through_every_result(tmp_path, server):
    source = _source(tmp_path, server, query="rain", filter=CC0_SHORT, page_size=2)
    records = list(read_freesound(source))
    assert [r.source_id for r in records] == ["101", "103", "105", "107", "108"]
    assert [r.line for r in records] == [1, 2, 3, 4, 5]
    assert _paths(server) == ["/apiv2/search/"] * 3  # 5 results, 2 a page
    assert [r.query.get("page") for r in server.seen] == [["1"], ["2"], ["3"]]
    assert server.seen[0].query["filter"] == [CC0_SHORT]


def test_a_sound_becomes_a_clip(tmp_path, server):
    source = _source(tmp_path, server, query="rain", filter=CC0_SHORT, split="train")
    first, _, third, *_ = read_freesound(source)
    assert first == Clip(
        clip_id="fs_101",
        source="fs",
        format="freesound",
        source_id="101",
        media=f"{server.url}/freesound/previews/101-hq.ogg",
        captions=(Caption("Rain on a tin roof, recorded outdoors.", origin="freesound", kind="source_text"),),
        split="train",
        licence=CC0,
        manifest=f"freesound:search?query=rain&filter={CC0_SHORT}",
        line=1,
    )
    assert first.start is None and first.end is None
    assert licence_id(first.licence) == "CC0-1.0" and licence_id(BY_NC) == "CC-BY-NC-4.0"
    assert first.meta == {
        "title": "Rain on a tin roof",
        "uploader": "demo_user",
        "description": "Rain on a tin roof, recorded outdoors.",
        "tags": ["rain", "roof"],
        "duration": 12.5,
        "license": CC0,
        "url": f"{server.url}/people/demo_user/sounds/101/",
        "type": "wav",
        "samplerate": 44100,
        "channels": 2,
    }
    assert third.captions == (Caption("Rain on a window", origin="freesound", kind="source_text"),)


def test_sort_and_preview_are_passed_on(tmp_path, server):
    source = _source(tmp_path, server, query="rain", sort="duration_asc", preview="preview-lq-mp3")
    records = list(read_freesound(source))
    assert [r.source_id for r in records] == ["105", "101", "108", "104", "103", "107", "102"]
    assert records[0].media == f"{server.url}/freesound/previews/105-lq.mp3"
    assert records[0].manifest == "freesound:search?query=rain&sort=duration_asc"


def test_old_text_search_endpoint_is_selectable(tmp_path, server):
    source = _source(tmp_path, server, query="dog", search_endpoint="search/text/")
    assert [r.source_id for r in read_freesound(source)] == ["106"]
    assert _paths(server) == ["/apiv2/search/text/"]


def test_original_download_urls(tmp_path, server):
    source = _source(tmp_path, server, query="rain", filter=CC0_SHORT, download="original")
    assert [r.media for r in read_freesound(source)][:2] == [
        f"{server.url}/apiv2/sounds/101/download/",
        f"{server.url}/apiv2/sounds/103/download/",
    ]


@pytest.mark.parametrize(
    "overrides, clips, searches",
    [
        ({"max_results": 3}, 3, 2),  # 2 a page: the third clip is on page 2, no page 3 is asked for
        ({"limit": 2, "max_results": 5}, 2, 1),  # page_size shrinks to the cap
        ({"limit": 5, "max_results": 1}, 1, 1),
    ],
)
def test_max_results_and_limit(tmp_path, server, overrides, clips, searches):
    source = _source(tmp_path, server, query="", page_size=2, **overrides)
    assert [r.source_id for r in read_freesound(source)] == [str(i) for i in range(101, 101 + clips)]
    assert _paths(server) == ["/apiv2/search/"] * searches


def test_client_side_throttle_spaces_requests(tmp_path, server):
    source = _source(tmp_path, server, query="rain", filter=CC0_SHORT, page_size=2, requests_per_minute=600)
    started = time.monotonic()
    assert len(list(read_freesound(source))) == 5
    assert time.monotonic() - started >= 0.2  # 3 requests, 0.1 s apart


# --- ids mode --------------------------------------------------------------------------------------


def test_ids_keep_their_order_and_reject_unknown_and_invalid_ids(tmp_path, server):
    records = list(read_freesound(_source(tmp_path, server, ids=[103, 999, 0, 101])))
    assert [type(r) for r in records] == [Clip, RejectedRow, RejectedRow, Clip]
    assert [r.line for r in records] == [1, 2, 3, 4]
    assert {r.manifest for r in records} == {"freesound:ids"}
    assert records[0].clip_id == "fs_103" and records[3].clip_id == "fs_101"
    assert records[1] == RejectedRow("fs", "freesound:ids", 2, "Freesound id 999 not found (HTTP 404)")
    assert records[2].reason == "bad Freesound id '0' (expected a positive integer)"
    assert server.seen[0].query["filter"] == ["id:(103 OR 999 OR 101)"]  # one batch for the valid ids
    assert [r.path for r in server.seen] == ["/apiv2/search/", "/apiv2/sounds/999/"]


def test_ids_file(tmp_path, server):
    (tmp_path / "ids.txt").write_text("# sounds to fetch\n105\n\nabc\n 107 \n-4\n", encoding="utf-8")
    records = list(read_freesound(_source(tmp_path, server, ids_file="ids.txt", download="original")))
    manifest = str(tmp_path / "ids.txt")
    assert [(type(r).__name__, r.line, r.manifest) for r in records] == [
        ("Clip", 2, manifest),
        ("RejectedRow", 4, manifest),
        ("Clip", 5, manifest),
        ("RejectedRow", 6, manifest),
    ]
    assert records[1].reason == "bad Freesound id 'abc' (expected a positive integer)"
    assert records[2].media == f"{server.url}/apiv2/sounds/107/download/"


def test_ids_are_batched_by_page_size_and_capped_by_limit(tmp_path, server):
    source = _source(tmp_path, server, ids=[101, 102, 103, 104, 105], page_size=2, limit=3)
    assert [r.source_id for r in read_freesound(source)] == ["101", "102", "103"]
    assert _paths(server) == ["/apiv2/search/"] * 2


# --- failures --------------------------------------------------------------------------------------


def test_429_is_retried_after_the_servers_retry_after(tmp_path, own_server):
    server = own_server
    server.add_fault("/apiv2/search/", Fault(status=429, times=2, headers={"Retry-After": "0"}))
    # A backoff of 5 s: finishing quickly shows Retry-After, not the backoff, set the wait.
    source = _source(tmp_path, server, query="dog", retry={"attempts": 3, "backoff": 5, "max_backoff": 10})
    started = time.monotonic()
    assert [r.source_id for r in read_freesound(source)] == ["106"]
    assert time.monotonic() - started < 2
    assert _statuses(server, "/apiv2/search/", 3) == [429, 429, 200]


def test_retry_after_longer_than_max_backoff_fails_at_once(tmp_path, own_server):
    server = own_server
    server.add_fault("/apiv2/search/", Fault(status=429, times=1, headers={"Retry-After": "3600"}))
    with pytest.raises(FreesoundError, match="asks to wait 3600 s"):
        list(read_freesound(_source(tmp_path, server, query="dog")))
    assert _statuses(server, "/apiv2/search/", 1) == [429]
    assert server.seen == []


def test_503_exhausting_retries_is_a_clear_error(tmp_path, own_server):
    server = own_server
    server.add_fault("/apiv2/search/", Fault(status=503))
    source = _source(tmp_path, server, query="dog", retry={"attempts": 3, "backoff": 0.05, "max_backoff": 1})
    started = time.monotonic()
    with pytest.raises(FreesoundError, match=r"still failing after 3 tries \(last: HTTP 503\)"):
        list(read_freesound(source))
    assert time.monotonic() - started >= 0.15  # backoff 0.05 s, then 0.1 s
    assert _statuses(server, "/apiv2/search/", 3) == [503, 503, 503]


def test_a_timeout_is_retried(tmp_path, own_server):
    server = own_server
    server.add_fault("/apiv2/sounds/*", Fault(delay=0.6, times=1))
    source = _source(tmp_path, server, ids=[999], timeout=0.2)
    assert [r.reason for r in read_freesound(source)] == ["Freesound id 999 not found (HTTP 404)"]
    assert _paths(server)[:2] == ["/apiv2/search/", "/apiv2/sounds/999/"]  # the retry; the slow one comes later


@pytest.mark.parametrize("selection", [{"query": "rain"}, {"ids": [101]}])
def test_a_wrong_api_base_is_a_clear_error(tmp_path, server, selection):
    source = _source(tmp_path, server, api_base=f"{server.url}/apiv2/nothing", **selection)
    with pytest.raises(FreesoundError, match="no Freesound search endpoint at .*/apiv2/nothing/search/ .HTTP 404."):
        list(read_freesound(source))


def test_wrong_key_names_the_variable(tmp_path, server, monkeypatch):
    monkeypatch.setenv("MY_FS_KEY", "not-the-key")
    with pytest.raises(FreesoundCredentialsError, match="MY_FS_KEY") as raised:
        list(read_freesound(_source(tmp_path, server, query="rain", token_env="MY_FS_KEY")))
    assert "HTTP 401" in str(raised.value)
    assert _paths(server) == ["/apiv2/search/"]  # not retried


@pytest.mark.parametrize("value", [None, "", "  "])
def test_missing_key_fails_when_read_is_called(tmp_path, server, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("FREESOUND_API_KEY")
    else:
        monkeypatch.setenv("FREESOUND_API_KEY", value)
    with pytest.raises(FreesoundCredentialsError, match="environment variable FREESOUND_API_KEY is not set"):
        read_freesound(_source(tmp_path, server, query="rain"))  # the call itself, nothing iterated
    assert issubclass(FreesoundCredentialsError, ConfigError) and issubclass(ConfigError, ValueError)
    assert server.seen == []


def test_the_key_never_leaks(tmp_path, own_server, monkeypatch, caplog):
    server = own_server
    caplog.set_level(logging.DEBUG)
    records = list(read_freesound(_source(tmp_path, server, ids=[101, 999, -1])))
    records += list(read_freesound(_source(tmp_path, server, query="rain", filter=CC0_SHORT, download="original")))
    errors: list[BaseException] = []
    server.add_fault("/apiv2/search/", Fault(status=503, times=2))
    with pytest.raises(FreesoundError) as failing:
        list(read_freesound(_source(tmp_path, server, query="dog", retry={"attempts": 2, "backoff": 0})))
    errors.append(failing.value)
    monkeypatch.setenv("FREESOUND_API_KEY", KEY[::-1])  # a wrong key is a secret too
    with pytest.raises(FreesoundCredentialsError) as refused:
        list(read_freesound(_source(tmp_path, server, query="dog")))
    errors.append(refused.value)

    assert any(isinstance(r, RejectedRow) for r in records) and any(isinstance(r, Clip) for r in records)
    assert "freesound" in caplog.text  # the check below looked at real log lines
    texts = [repr(records), caplog.text, *(f"{e} {e!r} {e.__cause__!r} {e.__context__!r}" for e in errors)]
    texts += [f"{r.path}?{r.query}" for r in server.seen]
    for secret in (KEY, KEY[::-1]):
        assert not [text for text in texts if secret in text]
    # ... and it was sent, in the header only.
    assert {r.headers.get("Authorization") for r in server.seen} == {f"Token {KEY}", f"Token {KEY[::-1]}"}


# --- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({}, "give exactly one of query, ids, ids_file (got none)"),
        ({"query": "rain", "ids": [1]}, "give exactly one of query, ids, ids_file (got query, ids)"),
        ({"ids_file": "missing.txt"}, "file not found"),
        ({"query": "rain", "preview": "preview-hq-flac"}, "preview"),
        ({"query": "rain", "page_size": 151}, "page_size"),
        ({"query": "rain", "token": "x"}, "unknown key 'token'"),
    ],
)
def test_config_errors(tmp_path, overrides, message):
    data = {"name": "fs", "format": "freesound", **overrides}
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FreesoundSource.model_validate(data, context={"base_dir": tmp_path})
