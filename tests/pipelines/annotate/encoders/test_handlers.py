"""The ModelHandlers through a real RunInference(KeyedModelHandler(...)) on the FnApiRunner: every
element comes back under its key with the embedding the encoder gives it alone."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import BeamAssertException, assert_that

from pipelines.annotate.encoders import ClapConfig, ClipConfig
from pipelines.annotate.encoders.handlers import ClapAudioHandler, ClapTextHandler, ClipImageHandler, ClipTextHandler


def embeddings_equal(expected: dict[str, np.ndarray], dim: int):
    def check(actual: list[tuple[str, np.ndarray]]) -> None:
        got = dict(actual)
        if sorted(got) != sorted(expected) or len(got) != len(actual):
            raise BeamAssertException(f"keys {sorted(got)} != {sorted(expected)}")
        for key, value in got.items():
            if not (isinstance(value, np.ndarray) and value.dtype == np.float32 and value.shape == (dim,)):
                raise BeamAssertException(
                    f"{key}: expected float32 [{dim}], got {type(value)} {getattr(value, 'shape', '')}"
                )
            if not np.allclose(value, expected[key], atol=1e-5):
                raise BeamAssertException(f"{key}: embedding differs from the encoder's own")

    return check


def _window(key: str) -> tuple[str, np.ndarray]:
    """A key → (key, its 10-s window): made inside the pipeline, as the job reads clips from paths
    (a Create of the arrays themselves would bz2-pickle 10 MB into the graph, seconds of work)."""
    rng = np.random.default_rng(int(key[1:]))
    return key, (0.2 * rng.standard_normal(480000)).astype(np.float32)


def test_every_handler_through_run_inference(clap, clip, clap_config, clip_config, texts, frames):
    audio_in = dict(_window(f"w{i}") for i in range(5))
    image_in = {f"f{i}": frame for i, frame in enumerate(frames)}
    text_in = {f"t{i}": text for i, text in enumerate(texts)}
    # Each element alone: the embedding must not depend on the batch Beam happened to form.
    expected = {
        "audio": {key: clap.embed_audio(w[None])[0] for key, w in audio_in.items()},
        "clap_text": {key: clap.embed_text([t])[0] for key, t in text_in.items()},
        "image": {key: clip.embed_images([f])[0] for key, f in image_in.items()},
        "clip_text": {key: clip.embed_text([t])[0] for key, t in text_in.items()},
    }
    steps = {
        "audio": (audio_in, ClapAudioHandler(clap_config, "cpu"), clap.dim),
        "clap_text": (text_in, ClapTextHandler(clap_config, "cpu"), clap.dim),
        "image": (image_in, ClipImageHandler(clip_config, "cpu"), clip.dim),
        "clip_text": (text_in, ClipTextHandler(clip_config, "cpu"), clip.dim),
    }
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as pipeline:
        for name, (elements, handler, dim) in steps.items():
            keyed = (
                pipeline | f"Create_{name}" >> beam.Create(sorted(audio_in)) | f"Read_{name}" >> beam.Map(_window)
                if name == "audio"
                else pipeline | f"Create_{name}" >> beam.Create(sorted(elements.items()))
            )
            embedded = keyed | f"Embed_{name}" >> RunInference(KeyedModelHandler(handler))
            assert_that(embedded, embeddings_equal(expected[name], dim), label=f"Check_{name}")


def test_handlers_load_lazily_and_batch_as_configured(tmp_path):
    missing = ClapConfig(model=str(tmp_path / "not-built-yet"), batch={"min": 3, "max": 7})
    handler = ClapAudioHandler(missing, "cpu")  # construction never touches the model
    assert handler.batch_elements_kwargs() == {"min_batch_size": 3, "max_batch_size": 7}
    assert ClipTextHandler(ClipConfig(model=str(tmp_path)), "cpu").batch_elements_kwargs() == {
        "min_batch_size": 1,
        "max_batch_size": 32,
    }
    assert handler.get_metrics_namespace() == "t2a_clap_audio"
    assert handler.get_num_bytes([np.zeros(480000, np.float32)] * 2) == 2 * 480000 * 4


def test_run_inference_returns_each_elements_own_array(clap_config, clip_config, windows, texts):
    audio, text = ClapAudioHandler(clap_config, "cpu"), ClapTextHandler(clap_config, "cpu")
    model = audio.load_model()
    assert text.load_model() is model  # one CLAP per worker process for both handlers
    assert ClipImageHandler(clip_config, "cpu").load_model() is ClipTextHandler(clip_config, "cpu").load_model()
    results = audio.run_inference(list(windows[:3]), model)
    assert isinstance(results, list) and len(results) == 3
    np.testing.assert_allclose(np.stack(results), model.embed_audio(windows[:3]), atol=1e-6)
    assert [r.shape for r in text.run_inference(texts, model)] == [(model.dim,)] * len(texts)
