"""What a sample is conditioned on (`t2a sample --query`), CLIPSonic §2's query modes:

    text-zs     the prompt's embedding from the conditioner's own text tower: CLIP text for clip-image
                (CLIPSonic-ZS, zero-shot modality transfer; best with "a photo of [label]" prompts,
                `t2a prompts --form photo`), CLAP text for the CLAP modes (AudioLDM §3.2)
    text-prior  CLIP text → the diffusion prior's CLIP image embedding (CLIPSonic-PD / -SD; `--prior`)
    image       the CLIP image embedding of each picture (CLIPSonic-IQ; `--image photo.jpg`, repeatable)
    video       the frames ingest picks from a video (pipelines/core/frames.py, which ingest uses: the first
                frame at or after the centre of each of 4 equal parts), embedded as annotate embeds them and pooled
                (Make-An-Audio §4.3 visual-to-audio: the mean of 4 frames' CLIP embeddings, normalised)

Every mode gives the clip-image UNet the same [N, 1, D] L2-normalised token it was trained on.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from torch import Tensor

from pipelines.core.config import ConfigError
from pipelines.core.frames import video_frames

QUERIES = ("text-zs", "text-prior", "image", "video")
VIDEO_FRAMES = 4  # Make-An-Audio §4.3 pools 4 frames (the ingest default, media.frames)


def query_condition(bundle, request) -> Tensor:
    """One condition row per query item (prompt, image or video), before per_prompt repetition."""
    conditioner = bundle.conditioner
    if request.query == "text-zs":
        return conditioner.from_prompts(list(request.prompts))
    if conditioner.name != "clip-image":
        raise ConfigError(
            f"--query {request.query} needs a clip-image model (CLIPSonic); this one is conditioned on {conditioner.name}"
        )
    if request.query == "image":
        return conditioner.from_images([_read(path) for path in request.images])
    if request.query == "video":
        frames = video_frames(Path(request.video), VIDEO_FRAMES)  # ingest's pick (pipelines.core.frames)
        pooled = conditioner.from_images(frames).mean(dim=0, keepdim=True)
        return F.normalize(pooled, dim=-1)
    from training.models.prior import load_prior

    prior = load_prior(request.prior, conditioner.device)
    return prior.generate(conditioner.from_prompts(list(request.prompts))[:, 0], seed=request.seed)[:, None]


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the image ({error.strerror or error})") from None
