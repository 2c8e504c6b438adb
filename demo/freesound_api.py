"""A loopback emulator of the parts of the Freesound APIv2 the freesound reader uses.

`LoopbackServer(root, routes={"/apiv2/": freesound_route(db)})` answers:

- `GET /apiv2/search/` and `GET /apiv2/search/text/` (the endpoint it replaced; answered alike):
  `query` (terms matched as case-insensitive substrings of name, tags and description, all must
  match, `-term` excludes; empty: all sounds), `filter` (`field:value`, `field:"a phrase"`,
  `field:[a TO b]` with `*` for an open end, `field:(a OR b)`; `tag` means tags, `license` takes
  Freesound's names: "Creative Commons 0", "Attribution", "Attribution NonCommercial",
  "Sampling+" or the licence URL), `sort` (`score` = db order, `<field>_asc|_desc`), `fields`
  (default `id,name,tags,username,license`, as Freesound), `page`, `page_size` (default 15,
  at most 150); the answer is `{"count", "next", "previous", "results"}` with absolute URLs.
- `GET /apiv2/sounds/<id>/`: every field of the sound; 404 `{"detail": "Not found."}` if unknown.
- `GET /apiv2/sounds/<id>/download/`: OAuth2 only (`Authorization: Bearer <oauth_token>`); a 302
  redirect to the original, which the same server serves as a static file (with byte ranges).

Every other endpoint needs `Authorization: Token <api_key>` (or the documented `token=` URL
parameter, or the OAuth2 bearer token); otherwise 401 `{"detail": ...}`. `None` for `api_key` or
`oauth_token` turns that check off. Faults (429, 503, slow answers) come from the server's `Fault`
mechanism, which acts before any route.

The db is a JSON list of sounds in the API's own field names, except that `previews` values and
`download` are paths relative to the server root (`url`, when present, may be one too):
`{"id": 101, "name": ..., "tags": [...], "description": ..., "license": <licence URL>,
"username": ..., "duration": 12.5, "type": "wav", "samplerate": 44100, "channels": 2,
"previews": {"preview-hq-ogg": "freesound/previews/101-hq.ogg", ...},
"download": "freesound/originals/101.wav"}`. Answers carry absolute URLs built from the request's
Host header; `download` becomes the API's own `/apiv2/sounds/<id>/download/` URL, as on Freesound.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from demo.server import Request, Response, Route

DEFAULT_FIELDS = ("id", "name", "tags", "username", "license")
DEFAULT_PAGE_SIZE = 15
MAX_PAGE_SIZE = 150
SEARCH_PATHS = ("/search/", "/search/text/")

_SOUND_RE = re.compile(r"^/sounds/(\d+)/(download/)?$")
_FILTER_RE = re.compile(r'\s*([A-Za-z_]+):("[^"]*"|\[[^\]]*\]|\([^)]*\)|[^\s"\[(]+)')
_RANGE_RE = re.compile(r"^\[\s*(\S+)\s+TO\s+(\S+)\s*\]$", re.IGNORECASE)
_LICENSES = (  # Freesound's filter names and a piece of their licence URLs
    ("creative commons 0", "publicdomain/zero"),
    ("attribution noncommercial", "/by-nc/"),
    ("attribution", "/by/"),
    ("sampling+", "sampling+"),
)


class BadRequest(Exception):
    """A request the API would answer with 400; the message is its `detail`."""


# The emulator's credentials. `t2a serve` hands DEMO_API_KEY to the command it runs, as
# FREESOUND_API_KEY, so the demo's freesound source authenticates like a real one.
DEMO_API_KEY = "demo-key"
DEMO_OAUTH_TOKEN = "demo-oauth"


def db_record(
    sound_id: int,
    name: str,
    tags: list[str],
    license: str,  # noqa: A002 - the API's field name
    duration: float,
    *,
    description: str | None = None,
    username: str = "demo_user",
    samplerate: int = 44100,
    channels: int = 2,
    previews: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One sound of the emulator's db: the API's fields, with server-relative URLs."""
    default_previews = {
        f"preview-{q}-{ext}": f"freesound/previews/{sound_id}-{q}.{ext}" for q in ("hq", "lq") for ext in ("mp3", "ogg")
    }
    return {
        "id": sound_id,
        "name": name,
        "tags": tags,
        "description": f"{name}, recorded outdoors." if description is None else description,
        "license": license,
        "username": username,
        "duration": duration,
        "type": "wav",
        "samplerate": samplerate,
        "channels": channels,
        "previews": previews or default_previews,
        "download": f"freesound/originals/{sound_id}.wav",
        **extra,
    }


def freesound_route(
    db: Path | str | list[dict[str, Any]],
    api_prefix: str = "/apiv2",
    api_key: str | None = DEMO_API_KEY,
    oauth_token: str | None = DEMO_OAUTH_TOKEN,
) -> Route:
    sounds = load_db(db)
    by_id = {sound["id"]: sound for sound in sounds}
    prefix = api_prefix.rstrip("/")

    def route(request: Request) -> Response:
        path = request.path[len(prefix) :] if request.path.startswith(prefix + "/") else request.path
        base = f"http://{_header(request, 'Host') or 'localhost'}"
        match = _SOUND_RE.match(path)
        if match and match.group(2):
            if oauth_token is not None and _header(request, "Authorization") != f"Bearer {oauth_token}":
                return _json(401, {"detail": "This resource requires OAuth2 authentication."})
            return _download(by_id.get(int(match.group(1))), base)
        if not _authorized(request, api_key, oauth_token):
            return _json(401, {"detail": _auth_problem(request)})
        try:
            if path in SEARCH_PATHS:
                return _search(sounds, request, base, prefix, path)
            if match:
                sound = by_id.get(int(match.group(1)))
                return _json(200, render(sound, base, prefix)) if sound else _not_found()
        except BadRequest as exc:
            return _json(400, {"detail": str(exc)})
        return _not_found()

    return route


def reloading_route(db: Path, **options: Any) -> Route:
    """`freesound_route` over a db file that may appear or change while the server runs (the demo
    serves its folder before `dvc repro` builds the corpus in it)."""
    state: dict[str, Any] = {"stamp": None, "route": None}

    def route(request: Request) -> Response:
        stamp = db.stat().st_mtime_ns if db.is_file() else None
        if stamp is None:
            return _json(503, {"detail": f"no Freesound db at {db} yet"})
        if stamp != state["stamp"]:
            state["stamp"], state["route"] = stamp, freesound_route(db, **options)
        return state["route"](request)

    return route


def load_db(db: Path | str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    sounds = json.loads(Path(db).read_text(encoding="utf-8")) if isinstance(db, (str, Path)) else db
    seen: set[int] = set()
    for index, sound in enumerate(sounds):
        sound_id = sound.get("id") if isinstance(sound, dict) else None
        if not isinstance(sound_id, int) or isinstance(sound_id, bool) or sound_id <= 0:
            raise ValueError(f"freesound db entry {index}: 'id' must be a positive integer")
        if sound_id in seen:
            raise ValueError(f"freesound db entry {index}: id {sound_id} appears twice")
        seen.add(sound_id)
    return list(sounds)


def render(sound: dict[str, Any], base: str, prefix: str) -> dict[str, Any]:
    """A db sound as the API shows it: absolute URLs, `download` pointing at the API."""
    out = dict(sound)
    out["previews"] = {name: _absolute(base, path) for name, path in (sound.get("previews") or {}).items()}
    if "url" in sound:
        out["url"] = _absolute(base, sound["url"])
    if sound.get("download"):
        out["download"] = f"{base}{prefix}/sounds/{sound['id']}/download/"
    return out


# --- auth -----------------------------------------------------------------------------------------


def _header(request: Request, name: str) -> str | None:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return value.strip()
    return None


def _authorized(request: Request, api_key: str | None, oauth_token: str | None) -> bool:
    if api_key is None:
        return True
    header = _header(request, "Authorization")
    return (
        header == f"Token {api_key}"
        or (oauth_token is not None and header == f"Bearer {oauth_token}")
        or request.query.get("token", [None])[-1] == api_key
    )


def _auth_problem(request: Request) -> str:
    if _header(request, "Authorization") or "token" in request.query:
        return "Invalid token."
    return "Authentication credentials were not provided."


# --- search ---------------------------------------------------------------------------------------


def _search(sounds: list[dict[str, Any]], request: Request, base: str, prefix: str, path: str) -> Response:
    params = {key: values[-1] for key, values in request.query.items() if key != "token"}
    page = _int_param(params, "page", 1)
    page_size = min(_int_param(params, "page_size", DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
    terms = _query_terms(params.get("query", ""))
    tests = _parse_filter(params.get("filter", ""), sounds)
    hits = [s for s in sounds if _query_matches(s, terms) and all(_filter_matches(s, f, v) for f, v in tests)]
    hits = _sorted(hits, params.get("sort", "score"))
    pages = max(1, -(-len(hits) // page_size))
    if page > pages:
        return _json(404, {"detail": "Invalid page."})
    fields = [f for f in params.get("fields", ",".join(DEFAULT_FIELDS)).split(",") if f]
    chunk = hits[(page - 1) * page_size : page * page_size]
    results = [{f: v for f, v in render(s, base, prefix).items() if f in fields} for s in chunk]

    def link(number: int) -> str | None:
        return f"{base}{prefix}{path}?{urlencode({**params, 'page': number})}" if 1 <= number <= pages else None

    body = {"count": len(hits), "next": link(page + 1), "previous": link(page - 1), "results": results}
    return _json(200, body)


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    text = params.get(name, "")
    if text == "":
        return default
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(f"Invalid {name}: {text!r}")
    return int(text)


def _query_terms(query: str) -> list[tuple[bool, str]]:
    """(wanted, term) pairs; `-term` is a prohibited term, `+term` a mandatory one."""
    terms = []
    for word in query.replace('"', " ").lower().split():
        if word.startswith("-") and len(word) > 1:
            terms.append((False, word[1:]))
        elif word.lstrip("+"):
            terms.append((True, word.lstrip("+")))
    return terms


def _query_matches(sound: dict[str, Any], terms: list[tuple[bool, str]]) -> bool:
    text = " ".join([str(sound.get("name", "")), str(sound.get("description", "")), *map(str, sound.get("tags", []))])
    text = text.lower()
    return all((term in text) == wanted for wanted, term in terms)


def _parse_filter(text: str, sounds: list[dict[str, Any]]) -> list[tuple[str, str]]:
    known = {"tag", "id", "license"} | {key for sound in sounds for key in sound}
    tests, position = [], 0
    while position < len(text.strip()):
        match = _FILTER_RE.match(text, position)
        if not match:
            raise BadRequest(f"Invalid filter: cannot parse {text[position:].strip()!r}")
        field, value = match.groups()
        if field not in known:
            raise BadRequest(f"Invalid filter: unknown field {field!r}")
        tests.append((field, value))
        position = match.end()
    return tests


def _filter_matches(sound: dict[str, Any], field: str, value: str) -> bool:
    if value.startswith("(") and value.endswith(")"):
        return any(_filter_matches(sound, field, v) for v in re.split(r"\s+OR\s+", value[1:-1].strip()) if v)
    value = value.strip('"')
    if field == "license":
        return _license_matches(str(sound.get("license", "")), value)
    actual = sound.get("tags", []) if field == "tag" else sound.get(field)
    if isinstance(actual, list):
        return any(str(item).lower() == value.lower() for item in actual)
    range_match = _RANGE_RE.match(value)
    if range_match:
        return _in_range(actual, *range_match.groups())
    if isinstance(actual, (int, float)) and not isinstance(actual, bool):
        try:
            return float(actual) == float(value)
        except ValueError:
            return False
    return actual is not None and str(actual).lower() == value.lower()


def _in_range(actual: Any, low: str, high: str) -> bool:
    if not isinstance(actual, (int, float)) or isinstance(actual, bool):
        return False
    try:
        return (low == "*" or actual >= float(low)) and (high == "*" or actual <= float(high))
    except ValueError:
        raise BadRequest(f"Invalid filter: bad range [{low} TO {high}]") from None


def _license_matches(url: str, value: str) -> bool:
    if value.lower() == url.lower():
        return True
    for name, piece in _LICENSES:
        if value.lower() == name:
            return piece in url.lower()
    return False


def _sorted(hits: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    if sort in ("", "score"):
        return hits
    match = re.match(r"^([a-z_]+)_(asc|desc)$", sort)
    if not match:
        raise BadRequest(f"Invalid sort: {sort!r}")
    field = {"downloads": "num_downloads", "rating": "avg_rating"}.get(match.group(1), match.group(1))
    present = [s for s in hits if s.get(field) is not None]
    missing = [s for s in hits if s.get(field) is None]
    return sorted(present, key=lambda s: s[field], reverse=match.group(2) == "desc") + missing


# --- answers --------------------------------------------------------------------------------------


def _download(sound: dict[str, Any] | None, base: str) -> Response:
    if sound is None or not sound.get("download"):
        return _not_found()
    return Response(302, b"", content_type="text/plain", headers={"Location": _absolute(base, sound["download"])})


def _absolute(base: str, path: str) -> str:
    return path if re.match(r"^[a-z][a-z0-9+.-]*://", path) else f"{base}/{path.lstrip('/')}"


def _not_found() -> Response:
    return _json(404, {"detail": "Not found."})


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(status, json.dumps(body).encode("utf-8"), content_type="application/json")
