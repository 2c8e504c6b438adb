"""CLAP and CLIP encoders and their Beam ModelHandlers (`pipelines.annotate.encoders.handlers`).

    encoder = load_clap(config.clap, "cpu")                       # AudioTextEncoder, any backend
    windows = audio_windows(audio, rate, encoder.sample_rate, encoder.window_samples)
    clip_embedding = pool_windows(encoder.embed_audio(windows))   # float32 [dim], unit norm

Importing this package does not import torch (the config models are validated by every
command); `ClipEncoder`, `load_clip` and `clip_provenance` come from `pipelines.annotate.encoders.clip`,
imported on first access.
"""

from typing import Any

from pipelines.annotate.encoders.backends import CLAP_BACKENDS
from pipelines.annotate.encoders.base import AudioTextEncoder, ModelLoadError, audio_windows, pool_windows
from pipelines.annotate.encoders.config import BatchSize, ClapConfig, ClipConfig
from pipelines.annotate.encoders.loading import clap_provenance, load_clap

_CLIP = ("ClipEncoder", "load_clip", "clip_provenance")

__all__ = [
    "CLAP_BACKENDS",
    "AudioTextEncoder",
    "BatchSize",
    "ClapConfig",
    "ClipConfig",
    "ModelLoadError",
    "audio_windows",
    "clap_provenance",
    "load_clap",
    "pool_windows",
]


def __getattr__(name: str) -> Any:
    if name in _CLIP:
        from pipelines.annotate.encoders import clip

        return getattr(clip, name)
    raise AttributeError(f"module 'pipelines.annotate.encoders' has no attribute {name!r}")
