"""CLAP through transformers, on the tiny demo model: the encoder contract, determinism, batching
invariance, provenance, local-only resolution and the load errors a user can cause."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest

from pipelines.annotate.encoders import ClapConfig, ModelLoadError, clap_provenance, load_clap
from pipelines.core.io import content_sha256


def unit_rows(x: np.ndarray) -> bool:
    return np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_contract(clap, windows, texts):
    assert (clap.sample_rate, clap.window_samples, clap.dim) == (48000, 480000, 32)
    audio = clap.embed_audio(windows[:3])
    text = clap.embed_text(texts)
    assert audio.shape == (3, 32) and audio.dtype == np.float32 and unit_rows(audio)
    assert text.shape == (4, 32) and text.dtype == np.float32 and unit_rows(text)
    assert np.all(np.abs(text @ text.T - np.eye(4)).max(axis=1) > 1e-3)  # distinct texts, distinct embeddings
    assert clap.embed_audio(windows[:0]).shape == (0, 32) and clap.embed_text([]).shape == (0, 32)


def test_identical_across_two_loads(clap, clap_config, windows, texts):
    again = load_clap(clap_config, "cpu")
    assert again is not clap
    np.testing.assert_array_equal(again.embed_audio(windows[:2]), clap.embed_audio(windows[:2]))
    np.testing.assert_array_equal(again.embed_text(texts), clap.embed_text(texts))


def test_rejects_windows_of_another_length(clap):
    with pytest.raises(ValueError, match=r"expected windows of shape \[B, 480000\]"):
        clap.embed_audio(np.zeros((2, 1000), np.float32))


def test_provenance_without_loading_matches_the_loaded_model(clap, clap_config, demo_models):
    provenance = clap_provenance(clap_config)
    assert provenance == clap.provenance
    assert provenance["backend"] == "transformers" and provenance["model"] == str(demo_models["clap"])
    assert provenance["sha256"] == content_sha256(demo_models["clap"]) and provenance["transformers"][0].isdigit()


def test_an_id_resolves_in_the_local_hub_cache_only(demo_models, windows, clap, tmp_path, monkeypatch):
    commit = "0" * 40
    repo = tmp_path / "hub" / "models--acme--tiny-clap"
    shutil.copytree(demo_models["clap"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    cached = load_clap(ClapConfig(model="acme/tiny-clap"), "cpu")
    np.testing.assert_array_equal(cached.embed_audio(windows[:1]), clap.embed_audio(windows[:1]))
    assert cached.provenance["model"] == "acme/tiny-clap" and cached.provenance["sha256"] == clap.provenance["sha256"]
    with pytest.raises(
        ModelLoadError, match="'acme/other' is neither a folder nor a model in the local Hugging Face cache"
    ):
        load_clap(ClapConfig(model="acme/other"), "cpu")


def test_missing_folder_is_named(tmp_path: Path):
    missing = tmp_path / "models" / "clap"
    with pytest.raises(ModelLoadError, match=f"annotate.clap.model: model folder not found: {missing}"):
        load_clap(ClapConfig(model=str(missing)), "cpu")
    with pytest.raises(ModelLoadError, match="model folder not found"):
        clap_provenance(ClapConfig(model=str(missing)))


@pytest.mark.parametrize(
    ("remove", "message"),
    [("model.safetensors", "missing the weights"), ("processor_config.json", "missing the processor config")],
)
def test_incomplete_folder_names_the_missing_file(demo_models, tmp_path, remove, message):
    folder = shutil.copytree(demo_models["clap"], tmp_path / "clap")
    (folder / remove).unlink()
    with pytest.raises(ModelLoadError, match=message):
        load_clap(ClapConfig(model=str(folder)), "cpu")


def test_a_folder_without_vocabulary_is_refused(demo_models, tmp_path):
    folder = shutil.copytree(demo_models["clap"], tmp_path / "clap")
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        (folder / name).unlink()
    (folder / "vocab.json").write_text("{}")  # present but empty
    (folder / "merges.txt").write_text("")
    with pytest.raises(
        ModelLoadError, match="the tokenizer has 5 tokens for a text model of 1000 .* lacks its vocabulary files"
    ):
        load_clap(ClapConfig(model=str(folder)), "cpu")


def test_another_model_type_is_refused(demo_models):
    with pytest.raises(ModelLoadError, match="holds a 'clip' model, not 'clap'"):
        load_clap(ClapConfig(model=str(demo_models["clip"])), "cpu")


def test_window_length_must_match_the_feature_extractor(clap_config):
    with pytest.raises(ModelLoadError, match="trained on 10-s inputs .* set window_seconds: 10"):
        load_clap(clap_config.model_copy(update={"window_seconds": 5.0}), "cpu")


def test_feature_extractor_must_be_48k(demo_models, tmp_path):
    folder = shutil.copytree(demo_models["clap"], tmp_path / "clap")
    config = json.loads((folder / "processor_config.json").read_text())
    config["feature_extractor"]["sampling_rate"] = 16000
    (folder / "processor_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="expects 16000 Hz audio"):
        load_clap(ClapConfig(model=str(folder)), "cpu")


def test_an_embedding_does_not_depend_on_its_batch(clap, clap_config, windows, texts):
    """Beam batches by timing: an element's embedding must be the same bytes in any batch."""
    audio = clap.embed_audio(windows)
    assert all(np.array_equal(audio[i], clap.embed_audio(windows[i : i + 1])[0]) for i in range(len(windows)))
    assert np.array_equal(audio[2:4], clap.embed_audio(windows[[3, 2]])[::-1])
    text = clap.embed_text(texts)  # different lengths: a batched tokenizer would pad them to the longest
    assert all(np.array_equal(text[i], clap.embed_text([t])[0]) for i, t in enumerate(texts))
    # Batched (batch_invariant: false): texts of other lengths pad this one, and the attention mask
    # must hide the padding: equal up to rounding.
    batched = load_clap(clap_config.model_copy(update={"batch_invariant": False}), "cpu")
    np.testing.assert_allclose(batched.embed_audio(windows), audio, atol=1e-5)
    np.testing.assert_allclose(batched.embed_text(texts), text, atol=1e-5)
