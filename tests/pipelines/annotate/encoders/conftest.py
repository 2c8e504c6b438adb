"""Encoders over the tiny random CLAP/CLIP models (`demo_models`, tests/conftest.py) and a laion_clap checkpoint.
Nothing is downloaded: every test runs with HF_HUB_OFFLINE=1 and local_files_only loads."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo.models import build_laion_clap
from pipelines.annotate.encoders import ClapConfig, ClipConfig, load_clap, load_clip

WINDOW = 480000  # 10 s at 48 kHz


@dataclass(frozen=True)
class LaionFiles:
    checkpoint: Path
    text_model: Path


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def laion_files(tmp_path_factory: pytest.TempPathFactory) -> LaionFiles:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        return LaionFiles(*build_laion_clap(tmp_path_factory.mktemp("laion"), seed=0))


@pytest.fixture(scope="session")
def clap_config(demo_models: dict[str, Path]) -> ClapConfig:
    return ClapConfig(model=str(demo_models["clap"]), batch={"min": 2, "max": 4})


@pytest.fixture(scope="session")
def laion_config(laion_files: LaionFiles) -> ClapConfig:
    return ClapConfig(backend="laion_clap", model=str(laion_files.checkpoint), text_model=laion_files.text_model)


@pytest.fixture(scope="session")
def clip_config(demo_models: dict[str, Path]) -> ClipConfig:
    return ClipConfig(model=str(demo_models["clip"]), batch={"min": 1, "max": 2})


@pytest.fixture(scope="session")
def clap(clap_config: ClapConfig):
    return load_clap(clap_config, "cpu")


@pytest.fixture(scope="session")
def clip(clip_config: ClipConfig):
    return load_clip(clip_config, "cpu")


@pytest.fixture(scope="session")
def windows() -> np.ndarray:
    """float32 [6, 480000]: 10-s windows of tones over noise, a different mix per row."""
    rng = np.random.default_rng(0)
    t = np.arange(WINDOW, dtype=np.float32) / 48000
    tones = np.sin(2 * np.pi * rng.uniform(100, 4000, (6, 1)) * t)
    return (0.3 * tones + 0.05 * rng.standard_normal((6, WINDOW))).astype(np.float32)


@pytest.fixture(scope="session")
def frames() -> list[bytes]:
    """Four 224x224 JPEGs, as the clip cache stores frames: coloured ramps plus noise."""
    return [_jpeg(seed) for seed in range(4)]


def _jpeg(seed: int, size: int = 224) -> bytes:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size)[None, :, None] * rng.uniform(0, 1, (1, 1, 3))
    pixels = np.clip(ramp + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return ["a dog barks", "a siren wails while a man speaks", "rain falls on a roof", "a bell rings twice"]
