"""`load_clap(config, device)`: the configured CLAP backend, loaded from local files only."""

from __future__ import annotations

from pipelines.annotate.encoders.backends import CLAP_BACKENDS
from pipelines.annotate.encoders.base import AudioTextEncoder, torch_device
from pipelines.annotate.encoders.config import ClapConfig


def load_clap(config: ClapConfig, device: str) -> AudioTextEncoder:
    """The configured CLAP on `device` ("cpu" or "cuda", never guessed), in eval mode."""
    torch_device(device)
    encoder = CLAP_BACKENDS.get(config.backend)(config, device)
    encoder.batch_invariant = config.batch_invariant
    return encoder


def clap_provenance(config: ClapConfig) -> dict[str, str]:
    """What `load_clap(config, ...).provenance` will be, without loading the model."""
    return CLAP_BACKENDS.get(config.backend).provenance(config)
