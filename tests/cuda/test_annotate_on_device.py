"""Annotate's RunInference on the device (`t2a annotate --device cuda`): the CLAP and CLIP model handlers
through a real Beam RunInference on the FnApiRunner, each element's embedding equal to the CPU
encoder's (to TF32 convolution rounding). Skipped without a GPU (tests/support/on_device.py)."""

from __future__ import annotations

import io
import os

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import BeamAssertException, assert_that
from on_device import DEVICE, MARKS
from PIL import Image

from demo.models import build_clap, build_clip
from pipelines.annotate.encoders import ClapConfig, ClipConfig, load_clap, load_clip
from pipelines.annotate.encoders.handlers import ClapAudioHandler, ClapTextHandler, ClipImageHandler, ClipTextHandler

pytestmark = MARKS
os.environ.setdefault("HF_HUB_OFFLINE", "1")
TEXTS = ["a dog barks", "a siren wails while a man speaks", "rain falls on a roof"]


def _window(key: str) -> tuple[str, np.ndarray]:
    """key → (key, a 10-s 48 kHz window), made inside the pipeline as the job reads clips."""
    rng = np.random.default_rng(int(key[1:]))
    t = np.arange(480000, dtype=np.float32) / 48000
    return key, (0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) + 0.05 * rng.standard_normal(480000)).astype(
        np.float32
    )


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(128, 40, (224, 224, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def close_to(expected: dict[str, np.ndarray], dim: int):
    def check(actual: list[tuple[str, np.ndarray]]) -> None:
        got = dict(actual)
        if sorted(got) != sorted(expected) or len(got) != len(actual):
            raise BeamAssertException(f"keys {sorted(got)} != {sorted(expected)}")
        for key, value in got.items():
            if not (isinstance(value, np.ndarray) and value.dtype == np.float32 and value.shape == (dim,)):
                raise BeamAssertException(f"{key}: expected float32 [{dim}], got {getattr(value, 'shape', value)}")
            if not np.allclose(value, expected[key], atol=1e-3):
                raise BeamAssertException(f"{key}: {np.abs(value - expected[key]).max()} from the CPU embedding")

    return check


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> tuple[ClapConfig, ClipConfig]:
    root = tmp_path_factory.mktemp("models")
    return (
        ClapConfig(model=str(build_clap(root / "clap")), batch={"min": 2, "max": 4}),
        ClipConfig(model=str(build_clip(root / "clip")), batch={"min": 1, "max": 2}),
    )


def test_run_inference_on_the_device_gives_the_cpu_embeddings(configs):
    clap_config, clip_config = configs
    clap, clip = load_clap(clap_config, "cpu"), load_clip(clip_config, "cpu")
    audio_keys = [f"w{i}" for i in range(3)]
    images = {f"f{i}": _jpeg(i) for i in range(3)}
    texts = {f"t{i}": text for i, text in enumerate(TEXTS)}
    expected = {
        "audio": {key: clap.embed_audio(w[None])[0] for key, w in map(_window, audio_keys)},
        "clap_text": {key: clap.embed_text([t])[0] for key, t in texts.items()},
        "image": {key: clip.embed_images([f])[0] for key, f in images.items()},
        "clip_text": {key: clip.embed_text([t])[0] for key, t in texts.items()},
    }
    steps = {
        "audio": (None, ClapAudioHandler(clap_config, DEVICE), clap.dim),
        "clap_text": (texts, ClapTextHandler(clap_config, DEVICE), clap.dim),
        "image": (images, ClipImageHandler(clip_config, DEVICE), clip.dim),
        "clip_text": (texts, ClipTextHandler(clip_config, DEVICE), clip.dim),
    }
    assert steps["audio"][1].load_model().device.type == DEVICE  # the handler's model is on the device
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as pipeline:
        for name, (elements, handler, dim) in steps.items():
            keyed = (
                pipeline | f"Create_{name}" >> beam.Create(audio_keys) | f"Read_{name}" >> beam.Map(_window)
                if elements is None
                else pipeline | f"Create_{name}" >> beam.Create(sorted(elements.items()))
            )
            embedded = keyed | f"Embed_{name}" >> RunInference(KeyedModelHandler(handler))
            assert_that(embedded, close_to(expected[name], dim), label=f"Check_{name}")
