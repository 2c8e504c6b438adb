"""Sampling a token generator: text → token grid (AR or discrete diffusion) → codebook decoder → mel → vocoder.

    paths = run_tokens(Path("runs/x/dd/model"), Request(["a dog barks"], steps=100, guidance=1.0), Path("out"))

A `t2a train ar|dd` model folder (training/tasks/token_generator.py) holds everything: the generator, the
codebook it was trained on, the text encoder and t2a.json. AR: top-K sampling (Li et al. 2023 §3.2,
`top_k`, default the model's K = 512) of the column-major sequence (eq. 5), unflattened and looked up in
the codebook (eq. 7) and decoded (eq. 8). DD: Algorithm 2 with `steps` reverse steps over T (the fast
inference stride Δ_t = T/steps). Classifier-free guidance when `guidance` ≠ 1 (the text "" as the
unconditional input; useful only for a model trained with cfg_dropout > 0). Item i draws from seed + i
only, so a sample does not depend on the others in the batch. The mel goes to the vocoder given (a
SpeechT5HifiGan folder, e.g. `t2a train vocoder` on the same profile), else Griffin-Lim; the outputs are
written as the LDM's are (training/sample/generate.py write_outputs), so `t2a evaluate` scores them alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pipelines.core.config import ConfigError
from pipelines.core.features import get_profile
from training.models.vocoder import load_vocoder, mel_to_audio

META = "t2a.json"
KINDS = ("token-ar", "token-dd")


def token_kind(folder: Path) -> str | None:
    """ "token-ar" / "token-dd" for a token model folder, else None."""
    path = Path(folder) / META
    if not path.is_file():
        return None
    kind = json.loads(path.read_text()).get("kind")
    return kind if kind in KINDS else None


@dataclass
class TokenBundle:
    kind: str
    generator: Any  # TokenGPT or TokenDenoiser
    codebook: Any  # diffusers VQModel
    text: Any  # TextFeatures
    info: dict[str, Any]

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.info["grid"])


def load_token_bundle(folder: Path, device: str | torch.device = "cpu") -> TokenBundle:
    from diffusers import VQModel

    from training.models.text_features import TextFeatures
    from training.models.token_ar import TokenGPT
    from training.models.token_dd import TokenDenoiser

    folder = Path(folder)
    info = json.loads((folder / META).read_text())
    kind = info.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{folder}: not a token generator folder (t2a.json kind {kind!r})")
    cls = TokenGPT if kind == "token-ar" else TokenDenoiser
    generator = cls.from_pretrained(folder / "generator", local_files_only=True).to(device).eval()
    codebook = VQModel.from_pretrained(folder / "codebook", local_files_only=True).to(device).eval()
    text = TextFeatures.from_folder(folder, info["text"]["kind"], info["text"]["max_tokens"]).to(device)
    return TokenBundle(kind, generator, codebook, text, info)


@torch.no_grad()
def generate_tokens(
    bundle: TokenBundle, prompts: list[str], *, seed: int, per_prompt: int, steps: int, guidance: float, top_k: int
) -> Tensor:
    """Token grids [N, T', F'] int64, N = prompts × per_prompt, prompt-major; item i from seed + i."""
    from training.models import token_ar, token_dd

    texts = [p for p in prompts for _ in range(per_prompt)]
    generators = [torch.Generator().manual_seed(seed + i) for i in range(len(texts))]
    states, mask = bundle.text(texts)
    null = bundle.text.null(len(texts))
    rows, cols = bundle.grid
    if bundle.kind == "token-ar":
        sequence = token_ar.sample_tokens(
            bundle.generator,
            states,
            mask,
            rows * cols,
            top_k=top_k,
            generators=generators,
            guidance=guidance,
            null=null,
        )
    else:
        info = bundle.info
        schedule = token_dd.DiscreteSchedule(
            info["codebook_size"], info["timesteps"], info["transition"], info["final_mask"]
        )
        sequence = token_dd.sample_tokens(
            bundle.generator,
            schedule,
            states,
            mask,
            rows * cols,
            steps=steps,
            generators=generators,
            guidance=guidance,
            null=null,
        )
    return sequence.reshape(len(texts), rows, cols)


def run_tokens(
    checkpoint: Path,
    request,
    out_dir: Path,
    device: str | torch.device = "cpu",
    *,
    vocoder: str | Path | None = None,
) -> list[Path]:
    """load → tokens → codebook decoder → mel → vocoder → WAV + PNG + samples.json (training/sample/generate.py's)."""
    from training.models.vq import decode_indices
    from training.sample.generate import write_outputs

    if request.style_source is not None or request.inpaint_source is not None:
        raise ConfigError("style transfer and inpainting are for the latent diffusion model, not a token generator")
    bundle = load_token_bundle(checkpoint, device)
    profile = get_profile(bundle.info["profile"])
    top_k = request.top_k or bundle.info.get("top_k", 512)
    grids = generate_tokens(
        bundle,
        request.prompts,
        seed=request.seed,
        per_prompt=request.per_prompt,
        steps=request.steps,
        guidance=request.guidance,
        top_k=top_k,
    )
    mels = decode_indices(bundle.codebook, grids)[:, 0].float()  # [N, T'·r, n_mels]
    voc = load_vocoder(vocoder).to(device) if vocoder is not None else None
    waves = mel_to_audio(mels, voc, profile.name, request.griffin_lim_iters)
    if request.seconds is not None:
        frames = min(mels.shape[1], round(request.seconds * profile.sample_rate / profile.hop_length))
        mels, waves = mels[:, :frames], waves[:, : round(request.seconds * profile.sample_rate)]
    info = {**bundle.info, "top_k": top_k, "tokens": [g.flatten().tolist() for g in grids.cpu()]}
    return write_outputs(out_dir, request.prompts, mels.cpu(), waves.cpu(), profile.sample_rate, request, info=info)
