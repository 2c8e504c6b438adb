"""A small corpus in five manifest formats, for the job and CLI tests (fixture `mini` in
tests/pipelines/conftest.py; module-scoped copies build it directly)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from demo.freesound_api import db_record
from demo.server import LoopbackServer
from pipelines.core.tools import run_ffmpeg as _ffmpeg

SEGMENTS = """\
# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=5, num_segs=7, num_unique_labels=2, num_positive_labels=8
# YTID, start_seconds, end_seconds, positive_labels
AAAAAAAAAAA, 5.000, 15.000, "/m/09x0r,/m/03kmc9"
BBBBBBBBBBB, 12.000, 22.000, "/m/03kmc9"
CCCCCCCCCCC, 0.000, 10.000, "/m/09x0r"
AAAAAAAAAAA, 5.000, 15.000, "/m/09x0r"
DDDDDDDDDDD, 0.000, 10.000, "/m/03kmc9"
DDDDDDDDDDD, 8.000, 18.000, "/m/03kmc9"
EEEEEEEEEEE, ten, 20.000, "/m/03kmc9"
../../etc/p, 0.000, 10.000, "/m/03kmc9"
FFFFFFFFFFF, 0.000, 10.000, "/m/zzzzz"
"""
AUDIOCAPS_TRAIN = "audiocap_id,youtube_id,start_time,caption\n1,AAAAAAAAAAA,5,A man speaks while a siren wails\n"
AUDIOCAPS_TEST = "audiocap_id,youtube_id,start_time,caption\n" + "".join(
    f"{i},DDDDDDDDDDD,0,caption {i}\n" for i in range(2, 7)
)


@dataclass(frozen=True)
class MiniCorpus:
    root: Path
    config: Path
    server: LoopbackServer
    # expected outcome per status, counted in manifest rows
    expected = {
        "ok": 7,  # A, B (padded), table wav + video, fsd50k, freesound ×2
        "duplicate": 2,  # the repeated AudioSet row, and the AudioCaps row whose caption merges in
        "excluded": 2,  # both D segments: AudioCaps test excludes the whole video
        "rejected_row": 3,  # bad number, traversal id, unknown mid
        "failed_permanent": 5,  # C (404), corrupt, html page, no audio, fsd50k file missing
    }


def build_mini_corpus(root: Path, url: str, media, corpora: dict[str, str]) -> Path:
    """Write the corpus under `root` and a datasets.yaml with one corpus per (name → output)."""
    www = root / "www"
    for sub in ("yt", "media", "freesound/previews"):
        (www / sub).mkdir(parents=True, exist_ok=True)
    for ytid in ("AAAAAAAAAAA", "BBBBBBBBBBB", "DDDDDDDDDDD"):
        shutil.copy(media.video, www / "yt" / f"{ytid}.mp4")
    shutil.copy(media.wav, www / "media" / "tone.wav")
    shutil.copy(media.video, www / "media" / "clip.mp4")
    shutil.copy(media.corrupt, www / "media" / "corrupt.mp4")
    shutil.copy(media.noaudio, www / "media" / "silent-film.mp4")
    (www / "media" / "page.mp4").write_text("<!DOCTYPE html><html>consent</html>")
    for sound in (101, 102):
        _ffmpeg(
            "-i",
            str(media.wav),
            "-t",
            "3",
            "-c:a",
            "libvorbis",
            str(www / "freesound" / "previews" / f"{sound}-hq.ogg"),
        )
    (www / "freesound" / "sounds.json").write_text(json.dumps([_sound(101), _sound(102)]))
    files = root / "manifests"
    (files / "fsd" / "audio").mkdir(parents=True, exist_ok=True)
    shutil.copy(media.wav, files / "fsd" / "audio" / "64760.wav")
    texts = {
        "segments.csv": SEGMENTS,
        "audiocaps_train.csv": AUDIOCAPS_TRAIN,
        "audiocaps_test.csv": AUDIOCAPS_TEST,
        "table.csv": "url,start,end,labels,caption\n"
        f"{url}/media/tone.wav,1,5,Siren,a steady tone\n{url}/media/clip.mp4,2,6,,\n"
        f"{url}/media/corrupt.mp4,,,,\n{url}/media/page.mp4,,,,\n{url}/media/silent-film.mp4,0,4,,\n",
        "fsd/dev.csv": "fname,labels,mids,split\n64760,Siren,/m/03kmc9,train\n99999,Siren,/m/03kmc9,val\n",
        "fsd/vocabulary.csv": "0,Siren,/m/03kmc9\n",
    }
    for name, text in texts.items():
        (files / name).write_text(text)
    config = root / "datasets.yaml"
    config.write_text(yaml.safe_dump({"corpora": {name: _corpus(output, url) for name, output in corpora.items()}}))
    return config


def _sound(sound_id: int) -> dict:
    previews = {
        f"preview-{q}-{ext}": f"freesound/previews/{sound_id}-hq.ogg" for q in ("hq", "lq") for ext in ("mp3", "ogg")
    }
    cc0 = "http://creativecommons.org/publicdomain/zero/1.0/"
    return db_record(
        sound_id,
        f"Tone {sound_id}",
        ["tone", "test"],
        cc0,
        3.0,
        description=f"A test tone {sound_id}.",
        previews=previews,
    )


def _corpus(output: str, url: str) -> dict:
    fast = {"attempts": 2, "backoff": 0.01}
    return {
        "output": output,
        "media": {"frames": 2, "frame_size": 64},
        "shards": {"profiles": ["audioldm"], "max_samples": 3},
        "sources": [
            {
                "name": "as",
                "format": "audioset",
                "manifest": "manifests/segments.csv",
                "fetch": {"backend": "youtube", "url_template": f"{url}/yt/{{id}}.mp4", "retry": fast},
            },
            {
                "name": "ac",
                "format": "audiocaps",
                "manifest": "manifests/audiocaps_train.csv",
                "fetch": {"backend": "youtube", "url_template": f"{url}/yt/{{id}}.mp4", "retry": fast},
            },
            {
                "name": "tb",
                "format": "table",
                "manifest": "manifests/table.csv",
                "split": "valid",
                "fetch": {"backend": "http", "retry": fast, "timeout": 5},
            },
            {
                "name": "fsd",
                "format": "fsd50k",
                "manifest": "manifests/fsd/dev.csv",
                "vocabulary": "manifests/fsd/vocabulary.csv",
                "fetch": {"backend": "local", "path_template": "manifests/fsd/audio/{id}.wav"},
            },
            {
                "name": "fs",
                "format": "freesound",
                "api_base": f"{url}/apiv2",
                "query": "tone",
                "requests_per_minute": 6000,
                "fetch": {"backend": "http", "retry": fast},
            },
        ],
        "exclude": [{"name": "audiocaps_test", "format": "audiocaps", "manifest": "manifests/audiocaps_test.csv"}],
    }
