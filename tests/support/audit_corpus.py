"""A corpus output folder built directly (clip cache + annotation store), for the qc, shard-policy and
review tests: 16 clips in two sources, real FLAC audio and JPEG frames, selected captions from
three kinds of expert, licences of three kinds, and CLAP audio embeddings with one planted
near-duplicate pair (aud_00 ~ aud_01).

    build_audit_corpus(root) -> Path    # datasets.yaml with corpus `audit`, output root/out
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from records import clip_record
from shard_samples import jpeg_bytes

from pipelines.annotate.store import AnnotationStore
from pipelines.ingest.cache import ClipCache

RATE = 48000
N_CLIPS = 16
LICENCES = (
    "http://creativecommons.org/publicdomain/zero/1.0/",
    "http://creativecommons.org/licenses/by/4.0/",
    "http://creativecommons.org/licenses/by-nc/4.0/",
)
CLAP = {"model": "tiny-clap", "sha256": "c" * 64}


def clip_ids() -> list[str]:
    return [f"aud_{i:02d}" for i in range(N_CLIPS)]


def audio(i: int, seconds: float = 2.0) -> np.ndarray:
    """A tone plus a little noise; clip 3 is band-limited to 4 kHz (upsampled 8-kHz audio)."""
    rng = np.random.default_rng(i)
    t = np.arange(int(seconds * RATE)) / RATE
    x = 0.3 * np.sin(2 * np.pi * (200 + 60 * i) * t) + 0.02 * rng.standard_normal(t.size)
    if i == 3:
        import soxr

        x = soxr.resample(soxr.resample(x, RATE, 8000), 8000, RATE)[: t.size]
    return x.astype(np.float32)


def flac(x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x, RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _ref(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def caption(i: int) -> tuple[str, str]:
    """(selected caption, its expert): a third human captions, a third label text, the rest experts."""
    if i % 3 == 0:
        return f"a person recorded sound number {i}", "human"
    if i % 3 == 1:
        return f"Tone {i}", "label_text"
    return f"a machine hums at pitch {i}", "captioning"


def build_audit_corpus(root: Path, embeddings: dict[str, np.ndarray] | None = None) -> Path:
    output = root / "out"
    cache, store = ClipCache(output), AnnotationStore(output)
    cache.create()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((N_CLIPS, 32)).astype(np.float32)
    vectors[1] = vectors[0] + 0.01 * rng.standard_normal(32).astype(np.float32)  # a re-upload of aud_00
    for i, clip_id in enumerate(clip_ids()):
        audio_bytes, frame = flac(audio(i)), jpeg_bytes(i)
        staging = cache.staging(clip_id)
        (staging / "audio.flac").write_bytes(audio_bytes)
        (staging / "frame_00.jpg").write_bytes(frame)
        record = clip_record(
            clip_id,
            source="alpha" if i < 8 else "beta",
            split="train",
            duration=2.0,
            audio_seconds=2.0,
            labels=[{"mid": None, "name": f"Tone {i}"}],
            licence=LICENCES[i % 3],
            meta={"title": f"tone {i}.wav", "uploader": f"user{i}"},
            media_url=f"http://127.0.0.1/{clip_id}.wav",
            frames=[{"file": "frame_00.jpg", "time": 1.0}],
            files={"audio.flac": _ref(audio_bytes), "frame_00.jpg": _ref(frame)},
        )
        cache.write_entry(staging, record)
        cache.commit(staging, clip_id)
        text, expert = caption(i)
        candidates = [
            {"text": text, "expert": expert, "clap_score": 0.6},
            {"text": f"another candidate {i}", "expert": "retrieval", "clap_score": 0.45},
            {"text": f"Tone {i}", "expert": "label_text", "clap_score": 0.2},
        ]
        if expert == "label_text":
            candidates = [candidates[2] | {"clap_score": 0.6}, candidates[1]]
        row = {
            "clip_id": clip_id,
            "status": "ok",
            "reason": "selected",
            "candidates": candidates,
            "selected_caption": text,
            "selected_expert": expert,
            "selected_score": 0.6,
            "label_text": f"Tone {i}",
            "label_score": 0.2,
            "mbtg_text": None,
            "chance_score": 0.1,
            "event_count": 1,
            "windows": 1,
            "frames": 1,
            "clip_digest": "d",
            "settings_hash": "s",
            "provenance": {"clap": CLAP},
        }
        vector = (embeddings or {}).get(clip_id, vectors[i])
        store.write(row, {"clap_audio": vector})
    store.write_table(clip_ids())
    (root / "manifest.csv").write_text("url\nhttp://127.0.0.1/a.wav\n")
    config = {
        "corpora": {
            "audit": {
                "output": "out",
                "sources": [
                    {"name": name, "format": "table", "manifest": "manifest.csv", "fetch": {"backend": "http"}}
                    for name in ("alpha", "beta")
                ],
                "annotate": {"clap": {"model": "./models/clap"}, "selection": {"threshold": 0.3}},
                "shards": {"profiles": ["audioldm"], "max_samples": 100, "frames": False},
            }
        }
    }
    path = root / "datasets.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def set_corpus_keys(config: Path, **blocks) -> None:
    """Replace top-level keys of the `audit` corpus (quality:, licences:, …)."""
    data = yaml.safe_load(config.read_text())
    data["corpora"]["audit"].update(blocks)
    config.write_text(yaml.safe_dump(data, sort_keys=False))
