"""The trainer's models: the mel VAE (vae.py, discriminator.py), the conditioning modes (conditioning.py), the
latent diffusion UNet and samplers (ldm.py), saving and loading (pipeline.py), the vocoder (vocoder.py); the
discrete-token generators: the codebook (vq.py, vggishish.py), text features (text_features.py), the GPT-2
(token_ar.py) and Diffsound's discrete diffusion (token_dd.py).

The names below are re-exported lazily (PEP 562), so importing one submodule, e.g. training.models.bundle,
does not load diffusers and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Bundle": "bundle",
    "Conditioner": "bundle",
    "CONDITIONERS": "conditioning",
    "build_conditioner": "conditioning",
    "drop_condition": "conditioning",
    "SAMPLERS": "ldm",
    "build_scheduler": "ldm",
    "build_unet": "ldm",
    "diffusion_loss": "ldm",
    "make_sampler": "ldm",
    "load_bundle": "pipeline",
    "model_hash": "pipeline",
    "save_pipeline": "pipeline",
    "VaeLoss": "vae",
    "build_vae": "vae",
    "calibrate_scaling": "vae",
    "compression": "vae",
    "encode_moments": "vae",
    "sample_latent": "vae",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
