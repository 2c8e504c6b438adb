"""CLIP on the tiny demo model: JPEG frames and texts → unit embeddings, deterministic and
independent of the batch; provenance; load errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipelines.annotate.encoders import ClipConfig, ModelLoadError, clip_provenance, load_clip
from pipelines.core.io import content_sha256


def test_images(clip, frames):
    assert (clip.image_size, clip.dim) == (224, 32)
    embeddings = clip.embed_images(frames)
    assert embeddings.shape == (4, 32) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert np.all(np.abs(embeddings @ embeddings.T - np.eye(4)).max(axis=1) > 1e-4)
    np.testing.assert_allclose(clip.embed_images(frames[2:3]), embeddings[2:3], atol=1e-5)
    assert clip.embed_images([]).shape == (0, 32)


def test_texts_are_truncated_to_the_model_positions(clip, texts):
    long = " ".join(["a dog barks"] * 100)  # ~300 tokens for 77 positions
    embeddings = clip.embed_text([*texts, long])
    assert embeddings.shape == (5, 32) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(clip.embed_text([texts[1]]), embeddings[1:2], atol=1e-5)


def test_identical_across_two_loads_and_provenance(clip, clip_config, frames, texts, demo_models):
    again = load_clip(clip_config, "cpu")
    np.testing.assert_array_equal(again.embed_images(frames[:2]), clip.embed_images(frames[:2]))
    np.testing.assert_array_equal(again.embed_text(texts), clip.embed_text(texts))
    assert clip_provenance(clip_config) == clip.provenance
    assert clip.provenance["sha256"] == content_sha256(demo_models["clip"])


def test_frames_of_another_size_are_resized_and_cropped(clip, frames):
    big = Image.open(io.BytesIO(frames[0])).resize((448, 448))
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    same = clip.embed_images([buffer.getvalue(), frames[0]])
    others = clip.embed_images(frames)
    closest_other = np.max(others @ others.T - 2 * np.eye(len(frames)))
    assert float(same[0] @ same[1]) > max(closest_other, 0.999)  # nearer than any two distinct frames


def test_unreadable_image_is_named(clip, frames):
    with pytest.raises(ValueError, match="image 1 is not a readable picture"):
        clip.embed_images([frames[0], b"not a jpeg"])


def test_missing_folder_and_wrong_model(demo_models, tmp_path):
    with pytest.raises(ModelLoadError, match=f"annotate.clip.model: model folder not found: {tmp_path / 'clip'}"):
        load_clip(ClipConfig(model=str(tmp_path / "clip")), "cpu")
    with pytest.raises(ModelLoadError, match="holds a 'clap' model, not 'clip'"):
        clip_provenance(ClipConfig(model=str(demo_models["clap"])))


def test_an_embedding_does_not_depend_on_its_batch(clip, frames, texts):
    images = clip.embed_images(frames)
    assert all(np.array_equal(images[i], clip.embed_images([f])[0]) for i, f in enumerate(frames))
    text = clip.embed_text(texts)
    assert all(np.array_equal(text[i], clip.embed_text([t])[0]) for i, t in enumerate(texts))
