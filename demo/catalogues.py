"""FSD50K and Clotho in the demo corpus: local WAV files with label or caption manifests.

FSD50K labels are propagated up the AudioSet ontology as in the real dataset (a church bell is also
a Bell, a Musical instrument and Music), skipping abstract and blacklisted classes; its
vocabulary.csv lists every label used. Clotho file names contain spaces, a comma and an
apostrophe, as real Clotho names do.
"""

from __future__ import annotations

import functools

import numpy as np

from demo.build import SHELL_ID, TRAVERSAL_ID, UNKNOWN_MID, Build, ManifestFile, csv_line
from demo.events import Event, captions, plan_events
from demo.sounds import SOUNDS
from pipelines.core.ontology import load_ontology

FSD_DEV, FSD_EVAL, FSD_VOCABULARY = "fsd50k/dev.csv", "fsd50k/eval.csv", "fsd50k/vocabulary.csv"
CLOTHO_CAPTIONS = "clotho/clotho_captions_development.csv"
CLOTHO_METADATA = "clotho/clotho_metadata_development.csv"
CLOTHO_SECONDS = (5.0, 8.0)  # real Clotho clips are 15-30 s; shorter keeps the corpus small
_CLOTHO_PLACES = (
    "Backyard",
    "City street",
    "Old church",
    "Kitchen",
    "Park at dawn",
    "Harbour, evening",
    "Neighbour's garden",
    "Train station",
    "Forest path",
    "Rooftop",
    "Village square",
    "Garage",
)
CLOTHO_LICENCES = ("http://creativecommons.org/publicdomain/zero/1.0/", "http://creativecommons.org/licenses/by/3.0/")
USERS = ("demo_user", "fieldrec_anna", "soundhunter77", "j.martin", "quiet_room", "tapeloop")


def fsd_label(name: str) -> str:
    """FSD50K's spelling of an AudioSet name: "Chirp, tweet" -> "Chirp_and_tweet"."""
    return name.replace(", ", "_and_").replace(" ", "_")


@functools.cache
def fsd_labels(key: str) -> tuple[tuple[str, str], ...]:
    """(label, mid) of a class and of its usable ancestors, nearest first."""
    ontology = load_ontology()
    mid = SOUNDS[key].mid
    chain = (mid, *ontology.ancestors(mid))
    usable = [m for m in chain if not set(ontology.restrictions(m)) & {"abstract", "blacklist"}]
    return tuple((fsd_label(ontology.name(m)), m) for m in usable)


def write_fsd50k(build: Build) -> None:
    rng = build.rng("fsd50k")
    n_dev, n_eval = build.n(30), build.n(10)
    fnames = [int(f) for f in rng.choice(range(1, 420_000), size=n_dev + n_eval + 2, replace=False)]
    dev = ManifestFile(FSD_DEV, header=["fname,labels,mids,split"])
    evaluation = ManifestFile(FSD_EVAL, header=["fname,labels,mids"])
    for i, fname in enumerate(fnames[: n_dev + n_eval]):
        labels, mids = _fsd_clip(build, rng, fname)
        if i < n_dev:
            dev.add(csv_line([fname, labels, mids, "val" if rng.random() < 0.2 else "train"]))
        else:
            evaluation.add(csv_line([fname, labels, mids]))
    rain = fsd_labels("rain")
    for manifest, fname in ((dev, fnames[-2]), (evaluation, fnames[-1])):
        extra = ["train"] if manifest is dev else []
        manifest.add(csv_line([fname, ",".join(p[0] for p in rain), ",".join(p[1] for p in rain), *extra]))
        build.add_missing(f"fsd50k/audio/{fname}.wav", manifest.rel)
        manifest.add_bad(csv_line([fname, "Rain"]), "wrong column count (2 fields)")
        manifest.add_bad(csv_line(["12x4", "Rain", "/m/06mb1", *extra]), "bad number: fname '12x4'")
        manifest.add_bad(csv_line([fnames[0], "Thunder", UNKNOWN_MID, *extra]), f"unknown mid {UNKNOWN_MID}")
        manifest.add_bad(csv_line([TRAVERSAL_ID, "Rain", "/m/06mb1", *extra]), f"path-traversal fname {TRAVERSAL_ID!r}")
        manifest.add_bad(csv_line([SHELL_ID, "Rain", "/m/06mb1", *extra]), f"shell-metacharacter fname {SHELL_ID!r}")
        build.write_manifest(manifest, "fsd50k")
    build.counts["fsd50k"].update(dev_clips=n_dev, eval_clips=n_eval)
    _write_vocabulary(build)


def _fsd_clip(build: Build, rng: np.random.Generator, fname: int) -> tuple[str, str]:
    """Queue one short mono clip; FSD50K clips are mostly one sound event filling the clip."""
    seconds = round(float(rng.uniform(0.5, 2.5)), 3)
    events = plan_events(rng, 0.05, seconds - 0.05, n=2 if rng.random() < 0.2 else 1)
    build.media(f"fsd50k/audio/{fname}.wav", events, seconds, channels=1)
    pairs = dict(pair for e in events for pair in fsd_labels(e.key))
    return ",".join(pairs), ",".join(pairs.values())


def _write_vocabulary(build: Build) -> None:
    vocabulary = sorted({pair for key in SOUNDS for pair in fsd_labels(key)})
    manifest = ManifestFile(FSD_VOCABULARY)  # no header, as in FSD50K
    for index, (label, mid) in enumerate(vocabulary):
        manifest.add(csv_line([index, label, mid]))
    manifest.add_bad(csv_line([len(vocabulary), "Thunder"]), "wrong column count (2 fields)")
    build.write_manifest(manifest, "fsd50k_vocabulary")


def write_clotho(build: Build) -> None:
    rng = build.rng("clotho")
    names: list[str] = []
    header = "file_name,keywords,sound_id,sound_link,start_end_samples,manufacturer,license"
    caption_file = ManifestFile(CLOTHO_CAPTIONS, header=["file_name," + ",".join(f"caption_{i}" for i in range(1, 6))])
    metadata = ManifestFile(CLOTHO_METADATA, header=[header])
    for _ in range(build.n(15)):
        seconds = round(float(rng.uniform(*CLOTHO_SECONDS)), 3)
        events = plan_events(rng, 0.0, seconds)
        name = _clotho_name(rng, events[0], names)
        names.append(name)
        build.media(f"clotho/development/{name}", events, seconds, channels=1)
        caption_file.add(csv_line([name, *captions(rng, events, 5, period=True)]))
        metadata.add(csv_line(_clotho_metadata(rng, name, events, seconds)))
    missing = "Deleted upload 3.wav"
    caption_file.add(csv_line([missing, *captions(rng, plan_events(rng, 0.0, 6.0), 5, period=True)]))
    build.add_missing(f"clotho/development/{missing}", CLOTHO_CAPTIONS)
    caption_file.add_bad(csv_line([names[0], "A bell rings.", "Rain falls."]), "wrong column count (3 fields)")
    licence = CLOTHO_LICENCES[0]
    some = ["A bell rings.", "Rain falls.", "Wind blows.", "A dog barks.", "A door knocks."]
    for bad in (TRAVERSAL_ID, f"{SHELL_ID}.wav"):
        kind = "path-traversal" if bad == TRAVERSAL_ID else "shell-metacharacter"
        caption_file.add_bad(csv_line([bad, *some]), f"{kind} file_name {bad!r}")
        metadata.add_bad(csv_line([bad, "rain", 4321, "", "[0, 100]", "x", licence]), f"{kind} file_name {bad!r}")
    metadata.add_bad(csv_line([names[0], "rain", 4321]), "wrong column count (3 fields)")
    metadata.add_bad(csv_line([names[0], "rain", "12ab", "", "[0, 100]", "x", licence]), "bad number: sound_id '12ab'")
    build.write_manifest(caption_file, "clotho")
    build.write_manifest(metadata, "clotho_metadata")


def _clotho_name(rng: np.random.Generator, main: Event, taken: list[str]) -> str:
    stem = f"{rng.choice(_CLOTHO_PLACES)} {main.sound.tags[0]}"
    name, k = f"{stem}.wav", 2
    while name in taken:
        name, k = f"{stem} {k}.wav", k + 1
    return name


def _clotho_metadata(rng: np.random.Generator, name: str, events: list[Event], seconds: float) -> list[object]:
    keywords = list(dict.fromkeys(tag for e in events for tag in e.sound.tags))
    sound_id, user = int(rng.integers(1000, 500_000)), str(rng.choice(USERS))
    offset = int(rng.integers(0, 2_000_000))
    samples = f"[{offset}, {offset + int(round(seconds * 44100))}]"
    link = f"https://freesound.org/people/{user}/sounds/{sound_id}/"
    return [name, ";".join(keywords), sound_id, link, samples, user, str(rng.choice(CLOTHO_LICENCES))]
