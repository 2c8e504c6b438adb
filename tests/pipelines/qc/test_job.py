"""`t2a qc` on a corpus folder: every clip measured, the planted near-duplicate grouped, leakage found
under another id, re-runs that measure nothing again; a re-encoded copy of a clip is a near-duplicate
under a real (tiny) CLAP."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from audit_corpus import RATE, audio, build_audit_corpus, clip_ids, set_corpus_keys

from pipelines.core.config import ConfigError
from pipelines.core.tools import run_ffmpeg
from pipelines.datasets import load_corpus
from pipelines.qc import duplicates
from pipelines.qc import job as qc
from pipelines.qc.store import QualityStore, read_quality


def test_every_clip_is_measured_and_the_planted_duplicate_grouped(tmp_path):
    config = build_audit_corpus(tmp_path)
    summary = qc.run(load_corpus(config, "audit"))
    rows = read_quality(tmp_path / "out")
    assert sorted(rows) == clip_ids() and summary["clips"] == 16 and summary["failed"] == 0
    assert rows["aud_00"]["duplicate_of"] == "aud_00" and rows["aud_01"]["duplicate_of"] == "aud_00"
    assert rows["aud_01"]["duplicate_group_size"] == 2 and rows["aud_02"]["duplicate_of"] is None
    assert summary["near_duplicate_groups"] == 1 and summary["near_duplicate_clips"] == 2
    assert rows["aud_03"]["bandwidth_hz"] == pytest.approx(4000, abs=200)  # the upsampled one
    assert rows["aud_04"]["bandwidth_hz"] > 20000
    assert rows["aud_05"]["loudness_lufs"] < -5 and rows["aud_05"]["speech"] is not None
    # A re-run reads what it measured; the table is the same bytes.
    table = (QualityStore(tmp_path / "out").root / "quality.parquet").read_bytes()
    stamps = {p: p.stat().st_mtime_ns for p in QualityStore(tmp_path / "out").clips.rglob("*.json")}
    qc.run(load_corpus(config, "audit"))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (QualityStore(tmp_path / "out").root / "quality.parquet").read_bytes() == table


def test_leakage_is_found_by_content_under_another_id(tmp_path):
    reference_root = tmp_path / "ref"
    reference_root.mkdir()
    ref_config = build_audit_corpus(reference_root)  # the "test set": same CLAP, other folder
    corpus_root = tmp_path / "corpus"
    corpus_root.mkdir()
    from pipelines.annotate.store import AnnotationStore

    leaked = AnnotationStore(reference_root / "out")
    vector = leaked.arrays("aud_07", leaked.read("aud_07"))["clap_audio"]
    other = np.random.default_rng(9).standard_normal((16, 32)).astype(np.float32)
    config = build_audit_corpus(
        corpus_root, embeddings={"aud_12": vector, **{f"aud_{i:02d}": other[i] for i in range(2, 12)}}
    )
    set_corpus_keys(config, quality={"leakage_reference": [str(reference_root / "out")]})
    qc.run(load_corpus(config, "audit"))
    rows = read_quality(corpus_root / "out")
    assert rows["aud_12"]["leaked_of"] == "out:aud_07" and rows["aud_12"]["leak_score"] > 0.999
    assert rows["aud_03"]["leaked_of"] is None
    assert ref_config.is_file()


def test_a_missing_clip_cache_is_one_message(tmp_path):
    config = build_audit_corpus(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "out" / "clips")
    with pytest.raises(ConfigError, match="run `t2a ingest`"):
        qc.run(load_corpus(config, "audit"))


def test_a_re_encoded_copy_is_a_near_duplicate_under_a_real_clap(tmp_path, demo_models):
    """A clip and its MP3 (64 kb/s, via 22.05 kHz) copy: CLAP audio embeddings nearly equal; other clips not."""
    from pipelines.annotate.encoders.base import audio_windows
    from pipelines.annotate.encoders.clap_transformers import load
    from pipelines.annotate.encoders.config import ClapConfig

    original = audio(5, seconds=6.0)
    wav, mp3 = tmp_path / "a.wav", tmp_path / "a.mp3"
    sf.write(wav, original, RATE)
    run_ffmpeg("-i", str(wav), "-ar", "22050", "-b:a", "64k", str(mp3))
    decoded = tmp_path / "back.wav"
    run_ffmpeg("-i", str(mp3), "-ar", str(RATE), "-ac", "1", str(decoded))
    copy, _ = sf.read(io.BytesIO(decoded.read_bytes()), dtype="float32")
    clap = load(ClapConfig(model=str(demo_models["clap"]), window_seconds=10), "cpu")
    clips = [
        original,
        copy[: original.size],
        audio(11, seconds=6.0),
        np.random.default_rng(1).standard_normal(6 * RATE).astype(np.float32) * 0.1,
    ]
    windows = [audio_windows(x, RATE, clap.sample_rate, clap.window_samples) for x in clips]
    vectors = np.stack([clap.embed_audio(w).mean(axis=0) for w in windows])
    pairs = duplicates.near_pairs(vectors, 0.98)
    assert [(a, b) for a, b, _ in pairs] == [(0, 1)], pairs
