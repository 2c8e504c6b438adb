"""The demo corpus generator: exact manifest layouts, deliberate faults where the summary says,
ground truth for every good file, real media, and byte-identical rebuilds."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote

import pytest
import soundfile as sf

from demo.corpus import DEFAULT_BASE_URL, build_demo_corpus, build_video_corpus
from demo.freesound_api import load_db
from demo.server import LoopbackServer
from demo.sounds import SOUNDS
from demo.video import ffmpeg_exe
from pipelines.core.ontology import load_ontology
from pipelines.core.records import YOUTUBE_ID_RE

ONTOLOGY = load_ontology()
CLASS_NAMES = {s.name for s in SOUNDS.values()}
SAFE_NAME = re.compile(r"^[A-Za-z0-9][\w ,'.-]*\.wav$")  # what a good Clotho file name looks like
DECIMAL3 = re.compile(r"^\d+\.\d{3}$")
MEDIA_DIRS = ("yt", "media", "fsd50k/audio", "clotho/development", "freesound/previews", "freesound/originals")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    dest = tmp_path_factory.mktemp("demo") / "corpus"
    return dest, build_demo_corpus(dest, seed=0)


def _rows(path: Path, skip: int = 0, **fmt) -> list[tuple[int, list[str]]]:
    """(1-based line, fields) of every data row; no field of the corpus spans lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(i + 1, next(csv.reader([line], **fmt))) for i, line in enumerate(lines) if i >= skip]


def _malformed(summary: dict, rel: str) -> dict[int, str]:
    return {m["line"]: m["problem"] for m in summary["malformed"] if m["manifest"] == rel}


def _check_manifest(corpus, rel: str, check, skip: int = 1, **fmt) -> list[list[str]]:
    """Every row the summary calls malformed fails `check`; every other row passes. Returns the good rows."""
    dest, summary = corpus
    bad = _malformed(summary, rel)
    assert bad, f"{rel} has no malformed rows"
    good = []
    for line, fields in _rows(dest / rel, skip, **fmt):
        problem = check(fields)
        if line in bad and not bad[line].startswith("exact duplicate"):
            assert problem, f"{rel}:{line} is listed as malformed ({bad[line]}) but passes: {fields}"
        else:
            assert problem is None, f"{rel}:{line}: {problem}: {fields}"
            good.append(fields)
    return good


def _number(text: str) -> bool:
    return re.fullmatch(r"\d+(\.\d+)?", text) is not None


def _references(dest: Path, rel: str, summary: dict) -> None:
    """A referenced media file exists, or it is one of the deliberate 404s."""
    missing = {m["file"] for m in summary["missing"]}
    assert (dest / rel).is_file() or rel in missing, f"{rel} is referenced but neither exists nor is a known 404"


def _ffmpeg_info(path: Path) -> str:
    result = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stderr


def _duration(info: str) -> float:
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", info).groups()
    return int(h) * 3600 + int(m) * 60 + float(s)


def _hashes(root: Path) -> dict[str, str]:
    files = [p for p in sorted(root.rglob("*")) if p.is_file()]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


# --- classes -------------------------------------------------------------------------------------


def test_classes_are_real_usable_audioset_classes():
    assert len(SOUNDS) >= 10
    assert len({s.mid for s in SOUNDS.values()}) == len(SOUNDS)
    for sound in SOUNDS.values():
        assert ONTOLOGY.name(sound.mid) == sound.name
        assert not set(ONTOLOGY.restrictions(sound.mid)) & {"abstract", "blacklist"}, sound.name


# --- AudioSet ------------------------------------------------------------------------------------


def _audioset_row(fields: list[str]) -> str | None:
    if len(fields) != 4:
        return "column count"
    ytid, start, end, labels = fields
    if not YOUTUBE_ID_RE.match(ytid):
        return "youtube id"
    if not (DECIMAL3.match(start) and DECIMAL3.match(end)) or float(end) - float(start) != 10:
        return "times"
    if any(mid not in ONTOLOGY for mid in labels.split(",")):
        return "mid"
    return None


def test_audioset_segments_csv(corpus):
    dest, summary = corpus
    rel = "audioset/balanced_train_segments.csv"
    lines = (dest / rel).read_text().splitlines()
    assert [line[0] for line in lines[:3]] == ["#"] * 3
    assert lines[2] == "# YTID, start_seconds, end_seconds, positive_labels"
    assert re.match(r'^[A-Za-z0-9_-]{11}, \d+\.000, \d+\.000, "/', lines[3]), "comma+space layout, quoted labels"
    good = _check_manifest(corpus, rel, _audioset_row, skip=3, skipinitialspace=True)
    assert 50 <= len(good) <= 60
    assert len(good) > len({tuple(r) for r in good}), "one exact duplicate row"
    problems = " ".join(_malformed(summary, rel).values())
    expected = ("column count", "bad number", "unknown mid", "bad YouTube id", "path-traversal", "shell", "duplicate")
    assert all(kind in problems for kind in expected)
    ids = {r[0] for r in good}
    assert any(i.startswith("-") for i in ids) and any("_" in i for i in ids) and any("-" in i[1:] for i in ids)
    for ytid in ids:
        _references(dest, f"yt/{ytid}.mp4", summary)
    assert len(ids) < len(good), "some videos have several segments"
    truth = json.loads((dest / "ground_truth.json").read_text())["files"]
    overrun = [r for r in good if f"yt/{r[0]}.mp4" in truth and float(r[2]) > truth[f"yt/{r[0]}.mp4"]["duration"]]
    assert overrun, "some segments end after their video"


def test_audioset_strong_tsv(corpus):
    dest, _ = corpus
    rel = "audioset/audioset_train_strong.tsv"
    assert (dest / rel).read_text().splitlines()[0] == "segment_id\tstart_time_seconds\tend_time_seconds\tlabel"

    def check(fields):
        if len(fields) != 4:
            return "column count"
        match = re.fullmatch(r"(.+)_(\d+)", fields[0])
        if not match or not YOUTUBE_ID_RE.match(match.group(1)):
            return "segment id"
        if not (DECIMAL3.match(fields[1]) and DECIMAL3.match(fields[2])):
            return "number"
        if not 0 <= float(fields[1]) < float(fields[2]) <= 10:
            return "times"
        return None if fields[3] in ONTOLOGY else "mid"

    assert len(_check_manifest(corpus, rel, check, delimiter="\t")) >= 30


# --- VGGSound and AudioCaps ----------------------------------------------------------------------


def test_vggsound_csv(corpus):
    dest, summary = corpus

    def check(fields):
        if len(fields) != 4:
            return "column count"
        if not YOUTUBE_ID_RE.match(fields[0]):
            return "youtube id"
        if not fields[1].isdigit():
            return "number"
        return None if fields[2] and fields[3] in ("train", "test") else "label or split"

    good = _check_manifest(corpus, "vggsound/vggsound.csv", check, skip=0)
    assert len(good) == 21  # 20 clips and the 404
    assert any("," in r[2] for r in good), "a free-text label with a comma (quoted)"
    for row in good:
        _references(dest, f"yt/{row[0]}.mp4", summary)


def _audiocaps_row(fields):
    if len(fields) != 4:
        return "column count"
    if not fields[0].isdigit() or not fields[2].isdigit():
        return "number"
    return None if YOUTUBE_ID_RE.match(fields[1]) and fields[3] else "youtube id or caption"


def test_audiocaps_splits(corpus):
    dest, summary = corpus
    splits = {}
    for split in ("train", "val", "test"):
        rel = f"audiocaps/{split}.csv"
        assert (dest / rel).read_text().splitlines()[0] == "audiocap_id,youtube_id,start_time,caption"
        splits[split] = _check_manifest(corpus, rel, _audiocaps_row)
        for row in splits[split]:
            _references(dest, f"yt/{row[1]}.mp4", summary)
    assert len(splits["train"]) == 15
    for split, clips in (("val", 4), ("test", 3)):
        groups: dict[tuple[str, str], set[str]] = {}
        for row in splits[split]:
            groups.setdefault((row[1], row[2]), set()).add(row[3])
        assert len(groups) == clips and all(len(c) == 5 for c in groups.values()), "5 different captions per clip"
    ids = [r[0] for rows in splits.values() for r in rows]
    assert len(ids) == len(set(ids))
    segments = _rows(dest / "audioset/balanced_train_segments.csv", 3, skipinitialspace=True)
    audioset = {(r[0], float(r[1])) for _, r in segments if _audioset_row(r) is None}
    assert sum((r[1], float(r[2])) in audioset for r in splits["train"]) >= 5, "train captions merge with AudioSet rows"
    test_ids = {r[1] for r in splits["test"]}
    assert set(summary["audiocaps_test_audioset"]) == test_ids & {ytid for ytid, _ in audioset}
    assert len(summary["audiocaps_test_audioset"]) >= 2


# --- FSD50K and Clotho ---------------------------------------------------------------------------


def test_fsd50k(corpus):
    dest, summary = corpus
    rows = _check_manifest(
        corpus,
        "fsd50k/vocabulary.csv",
        lambda f: None if len(f) == 3 and f[0].isdigit() and f[2] in ONTOLOGY else "row",
        skip=0,
    )
    vocabulary = {(r[1], r[2]) for r in rows}
    assert all(" " not in label for label, _ in vocabulary) and ("Chirp_and_tweet", "/m/07pggtn") in vocabulary

    def check(fields, columns):
        if len(fields) != columns:
            return "column count"
        if not fields[0].isdigit() or int(fields[0]) <= 0:
            return "fname"
        pairs = list(zip(fields[1].split(","), fields[2].split(",")))
        if len(fields[1].split(",")) != len(fields[2].split(",")) or not set(pairs) <= vocabulary:
            return "labels"
        return None if columns == 3 or fields[3] in ("train", "val") else "split"

    dev = _check_manifest(corpus, "fsd50k/dev.csv", lambda f: check(f, 4))
    evaluation = _check_manifest(corpus, "fsd50k/eval.csv", lambda f: check(f, 3))
    assert (dest / "fsd50k/dev.csv").read_text().startswith("fname,labels,mids,split\n")
    assert (dest / "fsd50k/eval.csv").read_text().startswith("fname,labels,mids\n")
    assert len(dev) == 31 and len(evaluation) == 11  # each with one 404
    assert {r[3] for r in dev} == {"train", "val"}
    for row in dev + evaluation:
        _references(dest, f"fsd50k/audio/{row[0]}.wav", summary)
    info = sf.info(str(dest / f"fsd50k/audio/{dev[0][0]}.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16")


def test_clotho(corpus):
    dest, summary = corpus
    captions = _check_manifest(
        corpus,
        "clotho/clotho_captions_development.csv",
        lambda f: None if len(f) == 6 and SAFE_NAME.match(f[0]) and all(f[1:]) else "row",
    )
    metadata = _check_manifest(
        corpus,
        "clotho/clotho_metadata_development.csv",
        lambda f: None if len(f) == 7 and SAFE_NAME.match(f[0]) and f[2].isdigit() and f[1] else "row",
    )
    assert (
        (dest / "clotho/clotho_captions_development.csv")
        .read_text()
        .startswith("file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n")
    )
    assert len(captions) == 16 and len(metadata) == 15
    assert all(" " in r[0] for r in captions) and any("," in r[0] for r in captions)
    assert all(len(set(r[1:])) == 5 for r in captions)
    assert all(";" in r[1] for r in metadata)
    for row in captions + metadata:
        _references(dest, f"clotho/development/{row[0]}", summary)


# --- table and Freesound -------------------------------------------------------------------------


def test_table(corpus):
    dest, summary = corpus
    prefix = f"{DEFAULT_BASE_URL}/media/"

    def check(fields):
        if len(fields) != 5:
            return "column count"
        url, start, end = fields[:3]
        path = unquote(url[len(prefix) :]) if url.startswith(prefix) else ""
        if not path or ".." in path or "/" in path or not re.fullmatch(r"[\w .-]+", path):
            return "url"
        if any(v and not _number(v) for v in (start, end)):
            return "number"
        if start and end and float(start) >= float(end):
            return "end before start"
        labels = fields[3].split(";")
        return None if all(label in CLASS_NAMES or label in ONTOLOGY for label in labels) else "label"

    good = _check_manifest(corpus, "table/table.csv", check)
    assert 20 <= len(good) <= 30
    assert (dest / "table/table.csv").read_text().startswith("url,start,end,labels,caption\n")
    assert {Path(unquote(r[0])).suffix for r in good} >= {".mp4", ".wav", ".flac", ".ogg"}
    assert any(not r[1] and not r[2] for r in good) and any(r[1] and r[2] for r in good)
    assert any(r[3].startswith("/") for r in good) and any(r[3][0].isalpha() for r in good), "mids and names"
    assert any("%20" in r[0] for r in good)
    for row in good:
        _references(dest, "media/" + unquote(row[0][len(prefix) :]), summary)


def test_freesound_db(corpus):
    dest, summary = corpus
    sounds = load_db(dest / "freesound/sounds.json")
    assert len(sounds) == 15
    keys = {
        "id",
        "name",
        "tags",
        "description",
        "license",
        "username",
        "duration",
        "type",
        "samplerate",
        "channels",
        "previews",
        "download",
    }
    missing = {m["file"] for m in summary["missing"]}
    for sound in sounds:
        assert set(sound) == keys
        assert set(sound["previews"]) == {"preview-hq-mp3", "preview-lq-mp3", "preview-hq-ogg", "preview-lq-ogg"}
        for rel in [*sound["previews"].values(), sound["download"]]:
            assert (dest / rel).is_file() or rel in missing
        if (dest / sound["download"]).is_file():
            info = sf.info(str(dest / sound["download"]))
            assert (info.samplerate, info.channels) == (sound["samplerate"], sound["channels"])
            assert info.duration == pytest.approx(sound["duration"], abs=0.001)
    assert len({s["license"] for s in sounds}) == 3
    assert any(s["duration"] > 30 for s in sounds)
    assert sum(s["download"] in missing for s in sounds) == 1


# --- media and ground truth ----------------------------------------------------------------------


def test_ground_truth_covers_every_good_media_file(corpus):
    dest, summary = corpus
    truth = json.loads((dest / "ground_truth.json").read_text())
    broken = {b["file"] for b in summary["broken"]}
    on_disk = {str(p.relative_to(dest)) for d in MEDIA_DIRS for p in (dest / d).rglob("*") if p.is_file()}
    assert on_disk - broken == set(truth["files"])
    assert broken <= on_disk
    assert {c["mid"] for c in truth["classes"]} == {s.mid for s in SOUNDS.values()}
    overlapping = 0
    for rel, entry in truth["files"].items():
        assert entry["events"], rel
        for event in entry["events"]:
            assert event["name"] in CLASS_NAMES and ONTOLOGY.name(event["mid"]) == event["name"]
            assert 0 <= event["start"] < event["end"] <= entry["duration"] + 1e-9, rel
        ordered = sorted(entry["events"], key=lambda e: e["start"])
        overlapping += any(b["start"] < a["end"] for a, b in zip(ordered, ordered[1:]))
    assert overlapping > 0 and any(len(e["events"]) >= 3 for e in truth["files"].values())
    assert all(count > 0 for count in summary["events_per_class"].values())


def test_videos_decode_with_expected_streams(corpus):
    dest, summary = corpus
    truth = json.loads((dest / "ground_truth.json").read_text())["files"]
    rel = next(r for r in truth if r.startswith("yt/"))
    info = _ffmpeg_info(dest / rel)
    assert _duration(info) == pytest.approx(truth[rel]["duration"], abs=0.05)
    assert re.search(r"Video: h264.*320x240.*25 fps", info) and re.search(r"Audio: aac.*44100 Hz, stereo", info)
    assert re.search(r"time=00:00:\d\d", info), "decodes to the end"
    problems = {b["problem"]: b["file"] for b in summary["broken"]}
    silent = _ffmpeg_info(dest / problems["MP4 with a video stream and no audio stream"])
    assert "Video: h264" in silent and "Audio:" not in silent
    assert "Invalid data" in _ffmpeg_info(dest / problems["random bytes named .mp4"])
    assert (dest / problems["empty file (0 bytes)"]).stat().st_size == 0


def test_corpus_is_small_and_served(corpus):
    dest, summary = corpus
    assert summary["bytes"] < 40_000_000
    row = next(r for _, r in _rows(dest / "table/table.csv", 1) if "%20" in r[0])
    with LoopbackServer(dest) as server:
        with urllib.request.urlopen(row[0].replace(DEFAULT_BASE_URL, server.url)) as answer:
            assert answer.status == 200 and len(answer.read()) > 1000
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{server.url}/media/deleted_take.flac")
        assert missing.value.code == 404
    readme = (dest / "README.md").read_text()
    assert "Broken on purpose" in readme and "deleted_take.flac" in readme


# --- determinism and the benchmark corpus --------------------------------------------------------


def test_same_seed_is_byte_identical_and_other_seeds_differ(tmp_path):
    first = build_demo_corpus(tmp_path / "a", seed=3, scale=0.1)
    build_demo_corpus(tmp_path / "b", seed=3, scale=0.1, workers=1)  # order of encoding must not matter
    build_demo_corpus(tmp_path / "c", seed=4, scale=0.1)
    a, b, c = (_hashes(tmp_path / name) for name in "abc")
    assert a == b and len(a) > 40
    assert first["malformed"] and first["broken"]
    different = {name for name in set(a) & set(c) if a[name] != c[name]}
    assert "audioset/balanced_train_segments.csv" in different and "ground_truth.json" in different
    assert set(a) != set(c), "file names (ids) depend on the seed"


def test_refuses_to_write_over_an_existing_corpus(tmp_path):
    (tmp_path / "yt").mkdir()
    with pytest.raises(FileExistsError, match="overwrite"):
        build_demo_corpus(tmp_path, scale=0.1)


def test_video_corpus(tmp_path):
    table = build_video_corpus(tmp_path, n_videos=2, seconds=12, base_url="http://127.0.0.1:9999")
    assert table == tmp_path / "table.csv"
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["url", "start", "end", "labels"] and len(rows) == 2
    for i, row in enumerate(rows):
        assert row["url"] == f"http://127.0.0.1:9999/videos/video_{i:04d}.mp4"
        start, end = float(row["start"]), float(row["end"])
        assert 0 <= start <= 2 and end == pytest.approx(start + 10)
        assert row["labels"] and all(label in CLASS_NAMES for label in row["labels"].split(";"))
        info = _ffmpeg_info(tmp_path / "videos" / f"video_{i:04d}.mp4")
        assert _duration(info) == pytest.approx(12.0, abs=0.05) and "320x240" in info and "44100 Hz, stereo" in info
    assert rows[0]["start"] != rows[1]["start"]
