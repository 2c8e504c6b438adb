"""`t2a train ldm`: latent diffusion on the VAE's latents, conditioned by name (training/models/conditioning.py).

    clap-audio   AudioLDM §3.2: trains on the clip's CLAP audio embedding, samples with the
                 prompt's CLAP text embedding (one shared space); FiLM through the class embedding.
    clap-text    Make-An-Audio: the caption's CLAP text-encoder token states, cross-attention.
    clip-image   CLIPSonic / Make-An-Audio V2A: CLIP frame embeddings, cross-attention.

One step: z = μ + σ·ε from the pre-encoded posterior (or the VAE encoder on the fly when
`ldm.latents: false`), scaled by the VAE's scaling factor; the condition is replaced by the null
condition with probability `ldm.cfg_dropout` (classifier-free guidance, AudioLDM eq. 9 /
Make-An-Audio eq. 2); then the DDPM loss at a uniform timestep (ε or v target).

Audio augmentations (training.data.examples.AudioAugment): with `data.augment.reprogram` (Make-An-Audio
§3.2.2) or `data.augment.mixup.domain: waveform` (AudioLDM §3.3 eq. 8) a sample's waveform is changed in
the loader; in the step its CLAP audio embedding is recomputed from the new waveform (clap-audio) and, on
pre-encoded latents, its new mel is encoded by the VAE (posterior as `ldm.posterior`), the other samples
keeping their stored latents. bench/augment_cost.py measures the cost.

Outputs (<run>/ldm/): checkpoints/, logs/ (TensorBoard: losses, lr, samples/s, data-wait, and
validation audio and spectrograms), metrics.jsonl, and model/ — a diffusers folder with the EMA UNet
that `t2a sample` reads and, for clap-audio, `diffusers.AudioLDMPipeline.from_pretrained` loads.
Several GPUs: `accelerate launch --multi_gpu -m training.tasks.ldm --config …` (or torchrun).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from pipelines.core.features import get_profile
from training.config import TrainConfig
from training.data.examples import AudioAugment, with_frames
from training.data.loader import (
    curriculum_filter,
    iter_batches,
    latent_example,
    make_loader,
    mel_example,
    mixup_transform,
    require_split,
)
from training.loop import Session, command, run
from training.state import TrainState

log = logging.getLogger(__name__)
VALID_SAMPLES = 2  # prompts sampled at each validation
VALID_STEPS = 25
CALIBRATION_CLIPS = 64  # validation clips whose mels set the mel-space normalisation


def train(config: TrainConfig) -> Path:
    from diffusers import AutoencoderKL
    from diffusers.training_utils import EMAModel

    from training.models.conditioning import build_conditioner, drop_condition
    from training.models.ldm import build_scheduler, build_unet, diffusion_loss
    from training.models.vae import compression, encode_moments, sample_latent
    from training.tasks.encode_latents import latents_location, vae_model_dir

    loop, ldm = config.ldm.train, config.ldm
    session = Session(config, loop, config.ldm_dir)
    profile = get_profile(config.data.profile)
    mel_space = ldm.space == "mel"
    if mel_space:  # CLIPSonic §3: no VAE; its train_frames (64: 2 s) unless a crop is given
        frames = config.ldm_data.crop_frames or profile.train_frames or profile.frames
        vae = _mel_space(config, frames).to(session.device)
    else:
        vae = AutoencoderKL.from_pretrained(vae_model_dir(config)).to(session.device).eval().requires_grad_(False)
        frames = config.ldm_data.crop_frames or profile.frames
    r, scaling = compression(vae), float(vae.config.scaling_factor)
    data, example = _data(config, r, frames, latents_location if ldm.latents and not mel_space else None)
    example = with_frames(example, ldm.conditioning)  # CLIPSonic trains on the clips with frames
    waves = _wave_embedder(config, session.device) if example_augments(example) else None
    require_split(data, data.valid_split, "`t2a train ldm` validates on data.valid_split: it")
    conditioner = build_conditioner(ldm, device=session.device)
    unet = session.configure(
        build_unet(ldm, conditioner, vae.config.latent_channels, (frames // r, profile.n_mels // r))
    )
    scheduler = build_scheduler(ldm.scheduler)
    opt, schedule = session.optimizer(unet.parameters())
    ema = EMAModel(unet.parameters(), decay=loop.ema_decay) if loop.ema_decay else None
    model = torch.compile(unet) if loop.compile else unet
    model, opt = session.accelerator.prepare(model, opt)
    if ema is not None:
        ema.to(session.device)
    augment = data.augment
    loader = make_loader(
        data,
        data.train_split,
        example,
        rank=session.rank,
        world_size=session.world_size,
        seed=config.seed,
        batch_transform=mixup_transform(augment.mixup.probability, augment.mixup.alpha)
        if augment.mixup.probability and augment.mixup.domain == "latent"
        else None,
        sample_filter=curriculum_filter(augment.curriculum.n) if augment.curriculum else None,
    )
    state = TrainState(
        models={"model": unet},
        optimizers={"model": opt},
        schedulers={"model": schedule},
        ema=ema,
        config=config.model_dump(mode="json"),
    )

    def latents_of(batch: dict[str, Any]) -> torch.Tensor:
        if mel_space:
            latents = vae.normalise(batch["mel"].to(session.device))
            return latents.contiguous(memory_format=torch.channels_last) if loop.channels_last else latents
        if "latent" in batch and isinstance(batch["latent"], list):  # augmented samples carry a new mel instead
            moments = _moments(vae, batch, session.device)
        elif "latent" in batch:
            moments = batch["latent"].to(session.device)
        else:
            with torch.no_grad():
                moments = encode_moments(vae, batch["mel"].to(session.device))
        if ldm.posterior == "mean":
            latents = moments.float().chunk(2, dim=1)[0].to(session.device) * scaling
        else:
            latents = sample_latent(moments, session.generator).to(session.device) * scaling
        return latents.contiguous(memory_format=torch.channels_last) if loop.channels_last else latents

    def train_step(batches: list[dict[str, Any]]) -> dict[str, float]:
        total = 0.0
        for batch in batches:
            latents = latents_of(batch)
            if waves is not None:
                batch = waves(batch)
            condition = conditioner.from_batch(batch, session.generator)
            condition = drop_condition(condition, conditioner.null(len(condition)), ldm.cfg_dropout, session.generator)
            with session.accelerator.autocast():
                loss = diffusion_loss(
                    model, scheduler, latents, conditioner.unet_kwargs(condition), session.generator, ldm.snr_gamma
                )
            session.accelerator.backward(loss / len(batches))
            total += float(loss.detach()) / len(batches)
        grad_norm = session.clip_and_step(model, opt, schedule)
        if ema is not None:
            ema.step(unet.parameters())
        return {"loss": total, "grad_norm": grad_norm}

    def validate(step: int) -> dict[str, float]:
        return _validate(session, unet, ema, scheduler, conditioner, latents_of, data, config, vae, frames, step)

    run(session, state, loader, train_step, validate=validate)
    if session.is_main:
        _export(config, vae, unet, ema, scheduler, conditioner, frames)
    session.accelerator.wait_for_everyone()
    session.logs.close()
    return config.ldm_dir / "model"


def _mel_space(config: TrainConfig, frames: int):
    """CLIPSonic §3 mel-domain diffusion: the identity MelSpace, its scale calibrated on the validation mels."""
    from training.models.melspace import calibrated

    data = config.ldm_data
    require_split(data, data.valid_split, "mel-space diffusion calibrates its scale on data.valid_split: it")
    mels = []
    for batch in iter_batches(
        data, data.valid_split, mel_example(data.profile, frames, random_crop=False), batch_size=data.batch_size
    ):
        mels.append(batch["mel"])
        if sum(len(m) for m in mels) >= CALIBRATION_CLIPS:
            break
    return calibrated(mels)


def _data(config: TrainConfig, r: int, frames: int, latents_location) -> tuple[Any, Any]:
    """The data config and example function: latent shards when pre-encoded, else the corpus mels."""
    data = config.ldm_data
    mbtg = mbtg_settings(data.augment.mbtg, config.ldm)
    if frames % r:
        raise ValueError(
            f"ldm.crop_frames / data.crop_frames {frames} must be a multiple of the VAE's compression r = {r}"
        )
    augment = data.augment
    reprogram = augment.reprogram if augment.reprogram.probability else None
    mixup = augment.mixup if augment.mixup.probability and augment.mixup.domain == "waveform" else None
    clips = None
    if reprogram or mixup:  # Make-An-Audio §3.2.2's D and AudioLDM §3.3's partners: the corpus's own clips
        from training.data.clips import clip_index

        clips = clip_index(data, data.train_split, config.run)
    features = None
    if clips is not None and config.ldm.conditioning == "clap-audio":  # the CLAP's input features in the loader
        from training.models.conditioning import ClapAudioFeatures

        features = ClapAudioFeatures(config.ldm.encoders.clap)
    if latents_location is None:
        return data, mel_example(
            data.profile,
            frames,
            random_crop=True,
            reprogram=reprogram,
            mbtg=mbtg,
            clips=clips,
            mixup=mixup,
            clap_features=features,
        )
    location = latents_location(config)
    if not (location / "index.json").is_file():
        raise FileNotFoundError(
            f"no latent shards for the current VAE at {location}: run `t2a encode-latents --config …` first (or set ldm.latents: false)"
        )
    # Pre-encoded latents: a sample the augmentations change is read from the corpus audio (clips) and its new
    # mel is encoded by the VAE in the training step (_moments); the others keep their stored posterior.
    augmenter = AudioAugment.of(data.profile, reprogram, mixup, clips, features)
    # profile: crops stay within the rows of real audio, as mel_example's do (a short clip's padding is silence)
    return data.model_copy(update={"shards": str(location)}), latent_example(
        frames // r, random_crop=True, profile=data.profile, mbtg=mbtg, augment=augmenter
    )


def example_augments(example) -> bool:
    """Whether the example changes audio on the fly (Make-An-Audio §3.2.2, AudioLDM §3.3 on waveforms)."""
    return getattr(example, "augment", None) is not None


def _moments(vae, batch: dict[str, Any], device) -> torch.Tensor:
    """The posteriors [B, 2C, H, W] of a latent batch with augmented samples: the stored ones, and the VAE
    encoder's of the augmented samples' new mels (the pre-encoded posterior, computed now)."""
    from training.models.vae import encode_moments

    changed = [i for i, latent in enumerate(batch["latent"]) if latent is None]
    rows: list[torch.Tensor | None] = [
        None if latent is None else latent.float().to(device) for latent in batch["latent"]
    ]
    if changed:
        with torch.no_grad():
            encoded = encode_moments(vae, torch.stack([batch["mel"][i] for i in changed]).to(device)).float()
        for i, moments in zip(changed, encoded):
            rows[i] = moments
    return torch.stack(rows)  # type: ignore[arg-type]


def _wave_embedder(config: TrainConfig, device):
    return wave_conditioning(
        config.ldm.conditioning, config.ldm.encoders.clap, get_profile(config.data.profile).sample_rate, device
    )


def wave_conditioning(conditioning: str, clap: str | None, rate: int, device="cpu"):
    """For clap-audio conditioning (AudioLDM §3.2): a batch transform replacing the stored CLAP audio embedding
    of each augmented sample by the conditioning CLAP's embedding of its new waveform (at `rate`, the mel
    profile's; resampled to CLAP's 48 kHz as AudioLDM's own CLAP wrapper does). Text conditioning reads the
    composed caption already; other modes need nothing recomputed (None)."""
    if conditioning != "clap-audio":
        return None
    from training.models.conditioning import ClapAudioEmbedder

    embed = ClapAudioEmbedder(clap, device)

    def recompute(batch: dict[str, Any]) -> dict[str, Any]:
        waves = batch.get("wave")
        if waves is None or all(wave is None for wave in waves):
            return batch
        stored = batch["clap_audio"].clone()
        inputs = batch.get("clap_input")
        for i, wave in enumerate(waves):
            if wave is None:
                continue
            if inputs is not None and inputs[i] is not None:  # features computed by the loader
                stored[i] = embed.embed_features(inputs[i]).to(stored)
            else:
                stored[i] = embed(wave, rate).to(stored)
        return {**batch, "clap_audio": stored}

    return recompute


def mbtg_settings(mbtg, ldm) -> Any:
    """data.augment.mbtg with its mask token: the configured one, else the mask token of the conditioning's
    own text encoder (Diffsound §IV-C masks with the token of the text encoder it trains with; RoBERTa's
    "<mask>" for CLAP), read from the encoder folder's tokenizer; None when MBTG is off."""
    if not mbtg.probability:
        return None
    token = mbtg.mask_token
    folder = ldm.encoders.clip if ldm.conditioning.startswith("clip") else ldm.encoders.clap
    if not token and folder:
        import transformers

        token = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True).mask_token
    if not token:
        raise ValueError(
            f"data.augment.mbtg: the {ldm.conditioning} text encoder's tokenizer has no mask token; set data.augment.mbtg.mask_token"
        )
    return mbtg.model_copy(update={"mask_token": str(token)})


@torch.no_grad()
def _validate(
    session, unet, ema, scheduler, conditioner, latents_of, data, config, vae, frames, step
) -> dict[str, float]:
    """Validation loss with fixed noise (comparable across steps) and a few prompts sampled and logged."""
    from training.models.ldm import diffusion_loss

    if ema is not None:
        ema.store(unet.parameters())
        ema.copy_to(unet.parameters())
    unet.eval()
    saved = session.generator.get_state()
    session.generator.manual_seed(config.seed + 12345)
    total, count = 0.0, 0
    for batch in iter_batches(
        data,
        data.valid_split,
        with_frames(_deterministic(config, frames, vae), config.ldm.conditioning),
        batch_size=data.batch_size,
        rank=session.rank,
        world_size=session.world_size,
    ):
        latents = latents_of(batch)
        condition = conditioner.from_batch(batch, session.generator)
        total += float(
            diffusion_loss(unet, scheduler, latents, conditioner.unet_kwargs(condition), session.generator)
        ) * len(latents)
        count += len(latents)
    session.generator.set_state(saved)
    if session.is_main and config.sample.prompts:
        _log_samples(session, unet, scheduler, conditioner, config, vae, frames, step)
    unet.train()
    if ema is not None:
        ema.restore(unet.parameters())
    total = session.accelerator.reduce(torch.tensor([total, count], device=session.device), reduction="sum")
    return {"valid_loss": float(total[0] / total[1])} if total[1] else {}


def _deterministic(config: TrainConfig, frames: int, vae):
    """Validation crops from the start of each clip (the training example crops at random)."""
    from training.models.vae import compression

    if config.ldm.latents and config.ldm.space == "latent":
        return latent_example(frames // compression(vae), random_crop=False)
    return mel_example(config.data.profile, frames, random_crop=False)


def _log_samples(session, unet, scheduler, conditioner, config: TrainConfig, vae, frames: int, step: int) -> None:
    from training.models.bundle import Bundle
    from training.sample.generate import Request, generate

    profile = get_profile(config.data.profile)
    bundle = Bundle(
        vae=vae,
        unet=unet,
        scheduler_config=dict(scheduler.config),
        conditioner=conditioner,
        profile=profile.name,
        frames=frames,
    )
    prompts = config.sample.prompts[:VALID_SAMPLES]
    request = Request(
        prompts=prompts,
        steps=min(config.sample.steps, VALID_STEPS),
        guidance=config.sample.guidance,
        sampler=config.sample.sampler,
        eta=config.sample.eta,
        seed=config.sample.seed,
    )
    mels, waves = generate(bundle, request, device=session.device)
    for i in range(len(prompts)):
        session.logs.audio(step, f"samples/{i}", waves[i], profile.sample_rate)
        session.logs.image(step, f"samples/{i}_mel", mels[i])


def _export(config: TrainConfig, vae, unet, ema, scheduler, conditioner, frames: int) -> None:
    from training.models.bundle import Bundle
    from training.models.pipeline import save_pipeline
    from training.models.vocoder import load_vocoder

    if ema is not None:
        ema.copy_to(unet.parameters())
    vocoder = load_vocoder(config.vocoder.model) if config.vocoder.model else None
    info = {
        "config": json.loads(json.dumps(config.model_dump(mode="json"), default=str)),
        "steps": config.ldm.train.steps,
    }
    bundle = Bundle(
        vae=vae,
        unet=unet,
        scheduler_config=dict(scheduler.config),
        conditioner=conditioner,
        profile=config.data.profile,
        vocoder=vocoder,
        frames=frames,
        info=info,
    )
    path = save_pipeline(config.ldm_dir / "model", bundle, clap_dir=config.ldm.encoders.clap)
    log.info("LDM saved to %s", path)


if __name__ == "__main__":  # `python -m training.tasks.ldm --config …` (accelerate launch, torchrun)
    command(__doc__, train)
