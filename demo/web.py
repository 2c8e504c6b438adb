"""Web-served parts of the demo corpus: a generic URL table over media/ and a Freesound database.

The table names files by URL on the loopback server, in every container the ingest must read
(MP4, WAV, FLAC, Ogg), one with a space in its name (percent-encoded in the URL). The Freesound
database (freesound/sounds.json) is what the APIv2 emulator in `demo.freesound_api`
serves; its preview and download fields are paths relative to the served folder.
"""

from __future__ import annotations

import functools
import json
from urllib.parse import quote

import numpy as np

from demo.build import SHELL_ID, TRAVERSAL_ID, UNKNOWN_MID, Build, ManifestFile, csv_line, random_bytes
from demo.catalogues import USERS
from demo.events import Event, captions, clip_events, plan_events
from demo.freesound_api import db_record

TABLE_CSV = "table/table.csv"
FREESOUND_DB = "freesound/sounds.json"
_TABLE_KINDS = ("mp4", "wav", "flac", "ogg")
_TABLE_STEMS = ("street", "garden", "workshop", "station", "hallway", "balcony", "field recording")
LICENCES = (
    "http://creativecommons.org/publicdomain/zero/1.0/",
    "http://creativecommons.org/licenses/by/4.0/",
    "http://creativecommons.org/licenses/by-nc/4.0/",
)
# (sample rate, channels) by container, alternating; uncompressed WAV stays mono to keep the corpus small.
_TABLE_AUDIO = {
    "mp4": ((44100, 2), (44100, 2)),
    "wav": ((44100, 1), (48000, 1)),
    "flac": ((48000, 2), (44100, 1)),
    "ogg": ((44100, 2), (48000, 2)),
}
_FORMATS = ((44100, 1), (44100, 1), (48000, 1), (44100, 2))  # (sample rate, channels) of short originals


def write_table(build: Build) -> None:
    rng = build.rng("table")
    manifest = ManifestFile(TABLE_CSV, header=["url,start,end,labels,caption"])
    n_files = build.n(14, 4)
    for i in range(n_files):
        kind = _TABLE_KINDS[i % len(_TABLE_KINDS)]
        stem = _TABLE_STEMS[i % len(_TABLE_STEMS)]
        name = f"{stem} {i:02d}.{kind}" if " " in stem else f"{stem}_{i:02d}.{kind}"
        seconds = round(float(rng.integers(20, 61)) / 5, 3)
        events = plan_events(rng, 0.0, seconds / 2) + plan_events(rng, seconds / 2, seconds)
        sr, channels = _TABLE_AUDIO[kind][i % 2]
        build.media(f"media/{name}", events, seconds, channels=channels, sr=sr)
        for start, end in _table_cuts(rng, events, seconds):
            cut = clip_events(events, start or 0.0, end if end is not None else seconds)
            manifest.add(_table_row(build, rng, name, start, end, cut))
    corrupt, missing = "corrupt_upload.mp4", "deleted_take.flac"
    write_corrupt = functools.partial(random_bytes, seed=build.seed, size=48 * 1024)
    build.add_broken(f"media/{corrupt}", "random bytes named .mp4", write_corrupt, TABLE_CSV)
    build.add_missing(f"media/{missing}", TABLE_CSV)
    for name in (corrupt, missing):
        manifest.add(csv_line([build.url(f"media/{name}"), "", "", "Siren", "A siren wails"]))
    _add_bad_table_rows(build, manifest)
    build.write_manifest(manifest, "table")
    build.counts["table"]["files"] = n_files


Cut = tuple[float | None, float | None]  # (start, end); None: from the beginning / to the end


def _table_cuts(rng: np.random.Generator, events: list[Event], seconds: float) -> list[Cut]:
    """Whole file, one open-ended cut, or 1-2 cuts around events (so every cut has labels)."""
    mode = rng.choice(["whole", "from", "cuts", "cuts"])
    if mode == "whole":
        return [(None, None)]
    if mode == "from":
        return [(round(events[0].start, 3), None)]
    chosen = rng.choice(len(events), size=min(len(events), int(rng.integers(1, 3))), replace=False)
    cuts = []
    for event in (events[int(i)] for i in sorted(chosen)):
        start = round(max(0.0, event.start - float(rng.uniform(0, 0.5))), 3)
        cuts.append((start, round(min(seconds, event.end + float(rng.uniform(0, 0.5))), 3)))
    return cuts


def _table_row(
    build: Build, rng: np.random.Generator, name: str, start: float | None, end: float | None, events: list[Event]
) -> str:
    use_mids = rng.random() < 0.5
    labels = list(dict.fromkeys(e.sound.mid if use_mids else e.sound.name for e in events))
    caption = captions(rng, events, 1)[0] if rng.random() < 0.75 else ""
    return csv_line([build.url(f"media/{quote(name)}"), _seconds(start), _seconds(end), ";".join(labels), caption])


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _add_bad_table_rows(build: Build, manifest: ManifestFile) -> None:
    good = build.url(f"media/{_TABLE_STEMS[0]}_00.mp4")
    manifest.add_bad(csv_line([good, "0.000", "2.000", "Siren"]), "wrong column count (4 fields)")
    manifest.add_bad(csv_line([good, "1.2.3", "4.000", "Siren", ""]), "bad number: start '1.2.3'")
    manifest.add_bad(csv_line([good, "3.000", "1.000", "Siren", ""]), "end before start (3.000 > 1.000)")
    manifest.add_bad(csv_line([good, "", "", f"Siren;{UNKNOWN_MID}", ""]), f"unknown mid {UNKNOWN_MID}")
    manifest.add_bad(csv_line([build.url(f"media/{TRAVERSAL_ID}"), "", "", "Siren", ""]), "path-traversal URL")
    manifest.add_bad(csv_line([build.url(f"media/{SHELL_ID}.wav"), "", "", "Siren", ""]), "shell-metacharacter URL")
    manifest.add_bad(csv_line(["file:///etc/passwd", "", "", "Siren", ""]), "not an http(s) URL (file://)")


# --- Freesound -----------------------------------------------------------------------------------


def write_freesound(build: Build) -> None:
    rng = build.rng("freesound")
    n = build.n(15, 3)
    ids = sorted(int(i) for i in rng.choice(range(10_000, 700_000), size=n, replace=False))
    # Licences cycle so that every kind is there; the last sound's original is missing (a 404).
    sounds = [
        _freesound_sound(build, rng, sound_id, LICENCES[i % 3], long=i in (2, 9), original=i < n - 1)
        for i, sound_id in enumerate(ids)
    ]
    # One sound names a shell command: the text must only ever be data (a caption), never run.
    sounds[1]["name"] = f"{sounds[1]['tags'][0]}_{SHELL_ID}.wav"
    build.add_missing(sounds[-1]["download"], FREESOUND_DB)
    build.write_text(FREESOUND_DB, json.dumps(sounds, indent=2) + "\n")
    licences = {name: sum(s["license"] == url for s in sounds) for name, url in zip(("cc0", "by", "by-nc"), LICENCES)}
    build.counts["freesound"] = {"rows": n, "malformed": 0, "long": sum(s["duration"] > 30 for s in sounds), **licences}


def _freesound_sound(
    build: Build, rng: np.random.Generator, sound_id: int, licence: str, long: bool, original: bool
) -> dict:
    seconds = round(float(rng.uniform(31, 36) if long else rng.uniform(1.5, 5.0)), 3)
    windows = np.arange(0.0, seconds, 10.0)
    events = [e for w in windows for e in plan_events(rng, float(w), min(float(w) + 10, seconds), n=1)]
    sr, channels = (16000, 1) if long else _FORMATS[int(rng.integers(len(_FORMATS)))]
    base = f"freesound/previews/{sound_id}-hq"
    for rel, (rate, chans) in ((f"{base}.ogg", (44100, 2)), (f"{base}.mp3", (44100, 2))):
        build.media(rel, events, seconds, channels=chans, sr=rate)
    if original:
        build.media(f"freesound/originals/{sound_id}.wav", events, seconds, channels=channels, sr=sr)
    main = events[0].sound
    tags = list(dict.fromkeys(t for e in events for t in e.sound.tags))
    suffix = str(rng.choice(["close", "distant", "loop", "field recording", "01"]))
    return db_record(
        sound_id,
        f"{main.tags[0].capitalize()} {suffix}",
        tags,
        licence,
        seconds,
        description=f"{captions(rng, events, 1, period=True)[0]} Recorded with a handheld recorder.",
        username=str(rng.choice(USERS)),
        samplerate=sr,
        channels=channels,
        previews={
            f"preview-{q}-{ext}": f"{base}.{ext}" for q in ("hq", "lq") for ext in ("mp3", "ogg")
        },  # hq files only
    )
