"""Saving and loading a trained model: a diffusers pipeline folder plus t2a.json.

    save_pipeline(out, bundle, clap_dir=...)    # <out>/vae, unet, scheduler, text_encoder, tokenizer, [vocoder], t2a.json
    bundle = load_bundle(out)                    # what training/sample/generate.py generates from

clap-audio folders are complete diffusers AudioLDM pipelines (model_index.json, the CLAP text tower as
ClapTextModelWithProjection, a SpeechT5HifiGan vocoder), so `diffusers.AudioLDMPipeline.from_pretrained(out)`
runs them, and load_bundle reads a downloaded AudioLDM checkpoint too. Without a trained vocoder an untrained
one of the right shape is written for the pipeline's sake and t2a.json says so: `t2a sample` then uses
Griffin-Lim. clap-text and clip-image folders hold the same components (no model_index.json, no vocoder unless
given): AudioLDMPipeline cannot run them, since it feeds its text embedding to the class embedding;
load_bundle does.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import diffusers
import torch
import transformers
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from pipelines.core.features import get_profile
from pipelines.core.io import staged_folder
from training.config import EncodersConfig
from training.models.bundle import Bundle
from training.models.conditioning import CONDITIONERS, TEXT_ENCODER
from training.models.ldm import make_sampler
from training.models.vae import compression
from training.models.vocoder import build_vocoder, load_vocoder

SCHEMA = "t2a.model/1"
META = "t2a.json"
AUDIOLDM = "AudioLDMPipeline"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def save_pipeline(out_dir: Path, bundle: Bundle, *, clap_dir: str | None) -> Path:
    """Write `bundle` to `out_dir` atomically: built in a sibling temp folder, then swapped in."""
    out_dir = Path(out_dir)
    with staged_folder(out_dir) as temp:
        _write(temp, bundle, clap_dir)
    return out_dir


def _write(folder: Path, bundle: Bundle, clap_dir: str | None) -> None:
    conditioner = bundle.conditioner
    bundle.vae.save_pretrained(folder / "vae")
    bundle.unet.save_pretrained(folder / "unet")
    # The sampler AudioLDM App. B uses, over the training forward process (t2a.json keeps the DDPM config).
    make_sampler("ddim", bundle.scheduler_config).save_pretrained(folder / "scheduler")
    if hasattr(conditioner, "save"):  # the text tower it samples with: the folder is self-contained
        conditioner.save(folder)
    vocoder = bundle.vocoder
    if vocoder is None and conditioner.name == "clap-audio" and isinstance(bundle.vae, AutoencoderKL):
        # (an inpainting UNet, 2C + 1 inputs, gets no model_index.json: AudioLDMPipeline cannot run it)
        profile = get_profile(bundle.profile)  # AudioLDMPipeline needs one: untrained, right shape
        vocoder = build_vocoder(profile.n_mels, profile.sample_rate, profile.hop_length)
    if vocoder is not None:
        vocoder.save_pretrained(folder / "vocoder")
    plain = (
        isinstance(bundle.vae, AutoencoderKL) and bundle.unet.config.in_channels == bundle.vae.config.latent_channels
    )
    if conditioner.name == "clap-audio" and (folder / TEXT_ENCODER).is_dir() and plain:
        _write_json(folder / "model_index.json", _model_index(conditioner))
    _write_json(folder / META, _meta(bundle, clap_dir))


def _model_index(conditioner) -> dict[str, Any]:
    return {
        "_class_name": AUDIOLDM,
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", type(conditioner.encoder).__name__],
        "tokenizer": ["transformers", type(conditioner.tokenizer).__name__],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "vocoder": ["transformers", "SpeechT5HifiGan"],
    }


def _meta(bundle: Bundle, clap_dir: str | None) -> dict[str, Any]:
    conditioner = bundle.conditioner
    source = getattr(conditioner, "source", None)
    encoders = {
        "clap": clap_dir or (source if conditioner.name.startswith("clap") else None),
        "clip": source if conditioner.name == "clip-image" else None,
    }
    return {
        "schema": SCHEMA,
        "conditioning": conditioner.name,
        "encoders": encoders,
        "profile": bundle.profile,
        "frames": bundle.frames,
        "vocoder_trained": bundle.vocoder is not None,
        "scheduler": {k: v for k, v in dict(bundle.scheduler_config).items() if not k.startswith("_")},
        "versions": {
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "info": bundle.info,
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def load_bundle(path: Path, device: str | torch.device = "cpu") -> Bundle:
    """A folder save_pipeline wrote, or a plain diffusers AudioLDM pipeline (clap-audio, profile audioldm)."""
    path = Path(path)
    meta = _read_meta(path)
    vae = _load_vae(path / "vae").to(device).eval()
    unet = UNet2DConditionModel.from_pretrained(path / "unet", local_files_only=True).to(device).eval()
    mode = CONDITIONERS.get(meta["conditioning"])
    if (path / TEXT_ENCODER / "config.json").is_file():
        conditioner = mode.from_folder(path, device)
    else:  # an older folder without the text tower: the encoders it was trained with
        conditioner = mode.from_encoders(EncodersConfig(**meta.get("encoders", {})), device)
    vocoder = load_vocoder(path / "vocoder").to(device) if meta["vocoder_trained"] else None
    frames = meta.get("frames") or unet.config.sample_size * compression(vae)
    return Bundle(
        vae=vae,
        unet=unet,
        scheduler_config=meta["scheduler"],
        conditioner=conditioner,
        profile=meta["profile"],
        vocoder=vocoder,
        frames=frames,
        info=meta.get("info", {}),
    )


def _load_vae(folder: Path):
    """The AutoencoderKL, or the identity MelSpace of a mel-domain model (CLIPSonic §3)."""
    from training.models.melspace import MelSpace, is_mel_space

    if is_mel_space(folder):
        return MelSpace.from_pretrained(folder, local_files_only=True)
    return AutoencoderKL.from_pretrained(folder, local_files_only=True)


def _read_meta(path: Path) -> dict[str, Any]:
    if (path / META).is_file():
        meta = json.loads((path / META).read_text())
        if meta.get("schema") != SCHEMA:
            raise ValueError(f"{path / META}: schema {meta.get('schema')!r}, this version reads {SCHEMA!r}")
        return meta
    index = path / "model_index.json"
    if not index.is_file() or json.loads(index.read_text()).get("_class_name") != AUDIOLDM:
        raise FileNotFoundError(
            f"{path}: neither a trained model (t2a.json) nor a diffusers AudioLDM pipeline (model_index.json)"
        )
    # A downloaded AudioLDM checkpoint: its DDIM config holds the training forward process.
    scheduler = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    config = {k: v for k, v in DDPMScheduler.from_config(scheduler).config.items() if not k.startswith("_")}
    return {
        "conditioning": "clap-audio",
        "profile": "audioldm",
        "frames": None,
        "vocoder_trained": True,
        "scheduler": config,
        "info": {"source": str(path)},
    }


def model_hash(vae_dir: Path) -> str:
    """sha256 over config.json and the weight files, in name order (names included): the model's identity."""
    vae_dir = Path(vae_dir)
    files = sorted(
        p for p in vae_dir.iterdir() if p.is_file() and (p.name == "config.json" or p.name.endswith(WEIGHT_SUFFIXES))
    )
    if not any(p.name == "config.json" for p in files):
        raise FileNotFoundError(f"{vae_dir}: no config.json; not a saved model folder")
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}\0{file.stat().st_size}\0".encode())
        with file.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
