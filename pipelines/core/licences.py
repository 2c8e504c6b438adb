"""Licences: every manifest format's licence strings as SPDX-like ids, and a clip's attribution.

Manifests write licences in many ways: Freesound's API and FSD50K give the Creative Commons deed
URL (`http://creativecommons.org/licenses/by/3.0/`), Freesound's search filter names them
("Attribution Noncommercial"), Clotho's metadata has URLs, a table may say `CC-BY 4.0` or `cc0`.
`licence_id` maps each to one id:

    CC0-1.0, CC-BY-<v>, CC-BY-SA-<v>, CC-BY-NC-<v>, CC-BY-NC-SA-<v>, CC-BY-ND-<v>, CC-BY-NC-ND-<v>
                               SPDX ids of the Creative Commons licences
    LicenseRef-CC-Sampling-Plus-1.0, LicenseRef-Public-Domain-Mark-1.0
                               Creative Commons texts that SPDX does not list
    LicenseRef-YouTube         a clip fetched from YouTube with no licence of its own: the uploader's
                               rights under YouTube's terms, not a licence to redistribute
    LicenseRef-Unknown         no licence given;  LicenseRef-Other: a string this module cannot read

A name without a version ("Attribution", "CC-BY") is read as the 4.0 licence, the one Freesound
offers today. The clip cache keeps the manifest's string as it was (clip.json `licence`); the shard
stage applies the corpus's `licences:` policy to these ids and writes the attribution beside the shards.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from pipelines.core.config import StrictModel
from pipelines.core.records import ClipRecord

YOUTUBE = "LicenseRef-YouTube"
UNKNOWN = "LicenseRef-Unknown"
OTHER = "LicenseRef-Other"
SAMPLING_PLUS = "LicenseRef-CC-Sampling-Plus-1.0"
PUBLIC_DOMAIN_MARK = "LicenseRef-Public-Domain-Mark-1.0"
DEFAULT_VERSION = "4.0"
YOUTUBE_FORMATS = ("audioset", "vggsound", "audiocaps")  # formats whose clips are YouTube segments

_ELEMENTS = ("by", "sa", "nc", "nd")
_URL = re.compile(r"creativecommons\.org/(licenses|publicdomain)/([a-z+-]+)/(\d\.\d)", re.I)
_VERSION = re.compile(r"(\d)(?:\.(\d))?")
_WORD = re.compile(r"[a-z0-9+]+(?:\.[0-9]+)?")
_NAMES = {  # Freesound's licence names and other spellings, without version
    "creative commons 0": "cc0",
    "public domain dedication": "cc0",
    "attribution": "by",
    "attribution noncommercial": "by-nc",
    "attribution non commercial": "by-nc",
    "attribution noncommercial sharealike": "by-nc-sa",
    "attribution sharealike": "by-sa",
    "attribution noderivatives": "by-nd",
    "sampling+": "sampling+",
    "sampling plus": "sampling+",
}


def licence_id(raw: str | None, *, youtube: bool = False) -> str:
    """The SPDX-like id of a manifest's licence string; `youtube`: the clip is a YouTube segment."""
    text = " ".join(str(raw or "").split())
    if not text:
        return YOUTUBE if youtube else UNKNOWN
    url = _URL.search(text)
    if url:
        kind, name, version = url.group(1).lower(), url.group(2).lower(), url.group(3)
        if kind == "publicdomain":
            return "CC0-1.0" if name == "zero" else PUBLIC_DOMAIN_MARK if name == "mark" else OTHER
        return _cc(name, version)
    lowered = text.lower().replace("_", " ")
    for spelled, name in _NAMES.items():
        if lowered == spelled:
            return _cc(name, None)
    if "youtube" in lowered:
        return YOUTUBE
    return _from_words(lowered)


def _from_words(lowered: str) -> str:
    """`CC-BY-NC 4.0`, `cc by-sa`, `CC0`, `cc-0 1.0`, `CC-BY-4.0` (an SPDX id already)."""
    compact = lowered.replace(" ", "-")
    if re.fullmatch(r"cc-?0(-1\.0)?|cc-?zero", compact):
        return "CC0-1.0"
    if re.fullmatch(r"(cc-)?sampling\+?(-1\.0)?", compact):
        return SAMPLING_PLUS
    match = re.fullmatch(r"(?:creative-commons-|cc-)((?:by|sa|nc|nd)(?:-(?:by|sa|nc|nd))*)(?:-(\d(?:\.\d)?))?", compact)
    if not match:
        return OTHER
    version = match.group(2)
    if version and "." not in version:
        version += ".0"
    return _cc(match.group(1), version)


def _cc(name: str, version: str | None) -> str:
    if name in ("cc0", "zero"):
        return "CC0-1.0"
    if name == "sampling+":
        return SAMPLING_PLUS
    parts = name.split("-")
    if "by" not in parts or any(p not in _ELEMENTS for p in parts):
        return OTHER
    ordered = [p for p in _ELEMENTS if p in parts]  # SPDX order: BY, then NC, then SA/ND
    spdx = ["BY", *(["NC"] if "nc" in ordered else []), *(["SA"] if "sa" in ordered else [])]
    spdx += ["ND"] if "nd" in ordered else []
    return f"CC-{'-'.join(spdx)}-{version or DEFAULT_VERSION}"


def is_youtube(entry: ClipRecord) -> bool:
    return entry.format in YOUTUBE_FORMATS or entry.clip_id.startswith("yt_")


def clip_licence(entry: ClipRecord) -> str:
    return licence_id(entry.licence, youtube=is_youtube(entry))


def attribution(entry: ClipRecord) -> dict[str, Any]:
    """What CC-BY asks a redistributor to name (title, author, source URL, licence) for one clip."""
    meta = entry.meta or {}
    title = str(meta.get("title") or meta.get("name") or "").strip() or None
    author = str(meta.get("uploader") or meta.get("username") or "").strip() or None
    return {
        "clip_id": entry.clip_id,
        "source": entry.source,
        "title": title,
        "author": author,
        "url": source_url(entry),
        "licence": clip_licence(entry),
        "licence_raw": entry.licence,
    }


def source_url(entry: ClipRecord) -> str | None:
    """The page a person opens to find the original: the sound's page, the video, or the media URL."""
    meta = entry.meta or {}
    if entry.format in ("freesound", "fsd50k") and str(entry.source_id).isdigit():
        return str(meta.get("url") or f"https://freesound.org/s/{entry.source_id}/")
    if meta.get("sound_link"):
        return str(meta["sound_link"])
    if is_youtube(entry) and re.fullmatch(r"[A-Za-z0-9_-]{11}", entry.source_id):
        start = int(entry.segment.start or 0)
        return f"https://www.youtube.com/watch?v={entry.source_id}" + (f"&t={start}s" if start else "")
    return entry.media_url


class LicencePolicy(StrictModel):
    """The `licences:` block of a corpus: which licence ids may go into its shards (docs/configuration.md).

    `allow` lists ids (`CC0-1.0`, `CC-BY-4.0`) or families without a version (`CC-BY` allows every
    CC-BY-x.y); no block, or `allow` left out, keeps every clip."""

    allow: list[str] | None = Field(None, min_length=1)

    @field_validator("allow")
    @classmethod
    def _ids(cls, values: list[str] | None) -> list[str] | None:
        for value in values or []:
            if not re.fullmatch(r"[A-Za-z0-9.+-]+", value):
                raise ValueError(f"{value!r} is not a licence id (e.g. CC0-1.0, CC-BY-4.0, CC-BY, {YOUTUBE})")
        return values

    def refuses(self, licence: str) -> str | None:
        """Why a clip with this licence id stays out of the shards; None when it is allowed."""
        if self.allow is None:
            return None
        for allowed in self.allow:
            if licence == allowed or (
                licence.startswith(allowed + "-") and _VERSION.fullmatch(licence[len(allowed) + 1 :])
            ):
                return None
        return f"licence {licence} is not allowed (licences.allow: {', '.join(self.allow)})"
