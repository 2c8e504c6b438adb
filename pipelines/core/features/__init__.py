"""Mel-spectrogram features: named profiles (one per paper) and the extractor that computes them.

    extractor = MelExtractor(get_profile("audioldm"))
    mel, real_frames = extractor(*load_audio("audio.flac"))   # float32 [64, 1024], int

No Beam and no job module: the shard writer and the trainer both import this.
"""

from pipelines.core.features.mel import RESAMPLE_QUALITY, MelExtractor, load_audio, to_mono
from pipelines.core.features.profiles import PROFILES, MelProfile, get_profile
from pipelines.core.registry import UnknownName

__all__ = [
    "PROFILES",
    "RESAMPLE_QUALITY",
    "MelExtractor",
    "MelProfile",
    "UnknownName",
    "get_profile",
    "load_audio",
    "to_mono",
]
