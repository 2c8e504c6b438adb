"""The Freesound APIv2 emulator, spoken to over HTTP through a real LoopbackServer."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from demo.freesound_api import db_record, freesound_route, load_db
from demo.server import Fault, LoopbackServer

CC0 = "http://creativecommons.org/publicdomain/zero/1.0/"
BY = "https://creativecommons.org/licenses/by/4.0/"
BY_NC = "https://creativecommons.org/licenses/by-nc/4.0/"
TOKEN = {"Authorization": "Token demo-key"}


def _sound(sound_id: int, name: str, tags: list[str], license: str, duration: float, **extra) -> dict:
    return db_record(sound_id, name, tags, license, duration, **extra)


SOUNDS = [
    _sound(101, "Rain on a tin roof", ["rain", "roof"], CC0, 12.5),
    _sound(102, "Heavy RAIN storm", ["storm", "thunder"], CC0, 45.0),
    _sound(103, "Dog barking", ["dog", "animal"], BY, 3.2, username="barker"),
    _sound(104, "Light drizzle", ["rain", "drizzle"], BY_NC, 20.0),
    _sound(105, "Birds at dawn", ["birds", "morning"], CC0, 30.0, description="Chirping before rain"),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory):
    # One server for the module: stopping a LoopbackServer takes its 0.5 s poll interval.
    tmp_path = tmp_path_factory.mktemp("freesound_api")
    db = tmp_path / "freesound.json"
    db.write_text(json.dumps(SOUNDS), encoding="utf-8")
    root = tmp_path / "www"
    (root / "freesound" / "previews").mkdir(parents=True)
    (root / "freesound" / "originals").mkdir(parents=True)
    (root / "freesound" / "previews" / "101-hq.ogg").write_bytes(b"OggS-preview-101")
    (root / "freesound" / "originals" / "101.wav").write_bytes(b"RIFF-original-101")
    with LoopbackServer(root, routes={"/apiv2/": freesound_route(db)}) as server:
        yield server


def _get(server: LoopbackServer, path: str, headers: dict | None = TOKEN, **params) -> requests.Response:
    return requests.get(f"{server.url}{path}", params=params, headers=headers, timeout=5)


def _ids(response: requests.Response) -> list[int]:
    return [sound["id"] for sound in response.json()["results"]]


# --- auth ------------------------------------------------------------------------------------------


def test_search_without_credentials_is_401_with_detail(api):
    response = _get(api, "/apiv2/search/", headers=None, query="rain")
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_wrong_key_is_401(api):
    response = _get(api, "/apiv2/search/", headers={"Authorization": "Token wrong"})
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."


def test_token_parameter_bearer_token_and_lowercase_header_are_accepted(api):
    assert _get(api, "/apiv2/sounds/101/", headers=None, token="demo-key").status_code == 200
    assert _get(api, "/apiv2/sounds/101/", headers={"Authorization": "Bearer demo-oauth"}).status_code == 200
    assert _get(api, "/apiv2/sounds/101/", headers={"authorization": "Token demo-key"}).status_code == 200


def test_open_api_when_key_is_none(tmp_path: Path):
    with LoopbackServer(tmp_path, routes={"/apiv2/": freesound_route(SOUNDS, api_key=None)}) as server:
        assert _get(server, "/apiv2/sounds/101/", headers=None).status_code == 200


# --- search ---------------------------------------------------------------------------------------


def test_query_is_case_insensitive_substring_of_name_tags_description(api):
    # 101 (name), 102 ("RAIN" in name), 104 (tag), 105 (description)
    assert _ids(_get(api, "/apiv2/search/", query="Rain")) == [101, 102, 104, 105]
    assert _ids(_get(api, "/apiv2/search/", query="rain -storm")) == [101, 104, 105]
    assert _get(api, "/apiv2/search/", query="").json()["count"] == len(SOUNDS)


def test_default_fields_are_freesounds(api):
    result = _get(api, "/apiv2/search/", query="dog").json()["results"][0]
    assert result == {"id": 103, "name": "Dog barking", "tags": ["dog", "animal"], "username": "barker", "license": BY}


def test_fields_selects_and_urls_are_absolute(api):
    result = _get(api, "/apiv2/search/", query="tin", fields="id,previews,download").json()["results"][0]
    assert set(result) == {"id", "previews", "download"}
    assert result["previews"]["preview-hq-ogg"] == f"{api.url}/freesound/previews/101-hq.ogg"
    assert result["download"] == f"{api.url}/apiv2/sounds/101/download/"


@pytest.mark.parametrize(
    "filter_, expected",
    [
        ('license:"Creative Commons 0"', [101, 102, 105]),
        ('license:"Attribution NonCommercial"', [104]),
        ("license:Attribution", [103]),
        ("duration:[0 TO 20]", [101, 103, 104]),
        ("duration:[25 TO *]", [102, 105]),
        ("tag:rain", [101, 104]),
        ("id:(103 OR 105 OR 999)", [103, 105]),
        ('license:"Creative Commons 0" duration:[0 TO 30]', [101, 105]),
        ("username:barker", [103]),
    ],
)
def test_filters(api, filter_, expected):
    assert _ids(_get(api, "/apiv2/search/", filter=filter_)) == expected


@pytest.mark.parametrize("filter_", ["duration:[a TO b]", "colour:red", "license:"])
def test_bad_filter_is_400(api, filter_):
    response = _get(api, "/apiv2/search/", filter=filter_)
    assert response.status_code == 400
    assert "Invalid filter" in response.json()["detail"]


def test_sort(api):
    assert _ids(_get(api, "/apiv2/search/", sort="duration_asc")) == [103, 101, 104, 105, 102]
    assert _ids(_get(api, "/apiv2/search/", sort="duration_desc"))[0] == 102
    assert _get(api, "/apiv2/search/", sort="sideways").status_code == 400


def test_pagination_with_absolute_next_and_previous(api):
    first = _get(api, "/apiv2/search/", query="", page_size=2, filter="channels:2").json()
    assert first["count"] == 5 and first["previous"] is None
    assert first["next"].startswith(f"{api.url}/apiv2/search/?")
    assert parse_qs(urlsplit(first["next"]).query) == {"page_size": ["2"], "filter": ["channels:2"], "page": ["2"]}
    seen, url, pages = [], f"{api.url}/apiv2/search/?page_size=2", 0
    while url:
        body = requests.get(url, headers=TOKEN, timeout=5).json()
        seen += [sound["id"] for sound in body["results"]]
        url, pages = body["next"], pages + 1
    assert seen == [101, 102, 103, 104, 105] and pages == 3
    assert body["previous"] == f"{api.url}/apiv2/search/?page_size=2&page=2"


def test_token_parameter_is_not_echoed_into_next(api):
    body = _get(api, "/apiv2/search/", headers=None, token="demo-key", page_size=1).json()
    assert "demo-key" not in body["next"]


def test_page_past_the_end_is_404_and_page_size_is_capped(api):
    assert _get(api, "/apiv2/search/", page=4, page_size=2).status_code == 404
    assert _get(api, "/apiv2/search/", page_size=1000).json()["next"] is None
    assert _get(api, "/apiv2/search/", page="x").status_code == 400


def test_old_text_search_endpoint_answers_alike(api):
    old = _get(api, "/apiv2/search/text/", query="rain", page_size=1).json()
    assert _ids(_get(api, "/apiv2/search/", query="rain"))[:1] == [r["id"] for r in old["results"]]
    assert old["next"].startswith(f"{api.url}/apiv2/search/text/?")


# --- sounds and downloads -------------------------------------------------------------------------


def test_sound_instance_has_every_field_with_absolute_urls(api):
    sound = _get(api, "/apiv2/sounds/101/").json()
    assert sound["name"] == "Rain on a tin roof" and sound["samplerate"] == 44100
    assert sound["previews"]["preview-lq-mp3"] == f"{api.url}/freesound/previews/101-lq.mp3"
    assert requests.get(sound["previews"]["preview-hq-ogg"], timeout=5).content == b"OggS-preview-101"


def test_unknown_sound_is_404_json(api):
    response = _get(api, "/apiv2/sounds/999/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}
    assert _get(api, "/apiv2/nothing/").status_code == 404


def test_download_needs_the_oauth2_bearer_token(api):
    assert _get(api, "/apiv2/sounds/101/download/").status_code == 401  # the API key is not enough
    bearer = {"Authorization": "Bearer demo-oauth"}
    redirect = requests.get(f"{api.url}/apiv2/sounds/101/download/", headers=bearer, allow_redirects=False, timeout=5)
    assert redirect.status_code == 302
    assert redirect.headers["Location"] == f"{api.url}/freesound/originals/101.wav"
    followed = requests.get(f"{api.url}/apiv2/sounds/101/download/", headers=bearer, timeout=5)
    assert followed.content == b"RIFF-original-101"
    assert _get(api, "/apiv2/sounds/999/download/", headers=bearer).status_code == 404


def test_faults_come_from_the_server(api):
    api.add_fault("/apiv2/search/", Fault(status=429, times=1, headers={"Retry-After": "7"}))
    limited = _get(api, "/apiv2/search/")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert _get(api, "/apiv2/search/").status_code == 200


# --- db -------------------------------------------------------------------------------------------


def test_db_from_file_and_list_agree(tmp_path: Path):
    path = tmp_path / "db.json"
    path.write_text(json.dumps(SOUNDS), encoding="utf-8")
    assert load_db(path) == load_db(SOUNDS) == SOUNDS


@pytest.mark.parametrize("bad", [[{"id": 0}], [{"id": "7"}], [{"name": "x"}], [{"id": 3}, {"id": 3}]])
def test_bad_db_fails_at_construction(bad):
    with pytest.raises(ValueError, match="freesound db entry"):
        freesound_route(bad)
