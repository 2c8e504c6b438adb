"""`t2a train inpaint`: Make-An-Audio §4.2's inpainting fine-tune of a trained LDM.

The trained model (`inpaint.init`, default <run>/ldm/model) gets the inpainting UNet's 1 + C + C input
channels (training/models/inpaint.py: weights copied, new channels zero) and trains on the corpus mels
with one mask per example from `inpaint.masks` (training/data/masks.py: LaMa's thin / medium / thick
irregular masks, wav2vec 2.0 frame spans with probability `inpaint.p`), drawn on the latent grid. The
loss is the LDM's (AudioLDM eq. 3) with concat[z_n, m, z_0 ⊙ (1 − m)] as input; the condition is
dropped with ldm.cfg_dropout as in `t2a train ldm`. Latents are encoded on the fly from the mels (the
VAE's posterior mean, or the mel itself for a mel-space model).

Validation (metrics.jsonl): the loss on data.valid_split under fixed "wide" (LaMa thick) and "narrow"
(LaMa thin) masks — the two evaluation conditions of Make-An-Audio Table 2.

Outputs (<run>/inpaint/): checkpoints/, logs/, metrics.jsonl and model/ — the LDM folder layout with the
inpainting UNet, which `t2a sample --checkpoint <run>/inpaint/model --inpaint src.wav --mask 2.5:7.5` uses.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.config import TrainConfig
from training.data.examples import with_frames
from training.data.loader import iter_batches, make_loader, mel_example, require_split
from training.loop import Session, command, run
from training.state import TrainState

log = logging.getLogger(__name__)
VALID_SEED = 4242  # the evaluation masks and noise are the same at every validation


def train(config: TrainConfig) -> Path:
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    from training.data.masks import MaskGenerator
    from training.models.conditioning import drop_condition
    from training.models.inpaint import WithContext, context, is_inpainting, widen
    from training.models.ldm import diffusion_loss
    from training.models.pipeline import load_bundle

    cfg, loop = config.inpaint, config.inpaint.train
    session = Session(config, loop, config.inpaint_dir)
    source = Path(cfg.init) if cfg.init else config.ldm_dir / "model"
    if not (source / "t2a.json").is_file():
        raise FileNotFoundError(f"no trained LDM at {source}: run `t2a train ldm` first (or set inpaint.init)")
    bundle = load_bundle(source, session.device)
    vae, channels = bundle.vae.requires_grad_(False), bundle.vae.config.latent_channels
    unet = bundle.unet if is_inpainting(bundle.unet, channels) else widen(bundle.unet)
    unet = session.configure(unet.to(session.device).train())
    scheduler = DDPMScheduler.from_config(bundle.scheduler_config)
    conditioner = bundle.conditioner
    if conditioner.name == "clip-image":
        conditioner.frames = config.ldm.clip_frames
    frames = bundle.frames
    data = config.ldm_data
    require_split(data, data.valid_split, "`t2a train inpaint` validates on data.valid_split: it")
    opt, schedule = session.optimizer(unet.parameters())
    ema = EMAModel(unet.parameters(), decay=loop.ema_decay) if loop.ema_decay else None
    model, opt = session.accelerator.prepare(unet, opt)
    if ema is not None:
        ema.to(session.device)
    loader = make_loader(
        data,
        data.train_split,
        with_frames(mel_example(data.profile, frames, random_crop=True), conditioner.name),
        rank=session.rank,
        world_size=session.world_size,
        seed=config.seed,
    )
    state = TrainState(
        models={"model": unet},
        optimizers={"model": opt},
        schedulers={"model": schedule},
        ema=ema,
        config=config.model_dump(mode="json"),
    )
    generators = [MaskGenerator(family, p=cfg.p, span=cfg.span) for family in cfg.masks]

    def latents_of(batch: dict[str, Any]) -> torch.Tensor:
        with torch.no_grad():
            mel = batch["mel"].to(session.device)
            if hasattr(vae, "normalise"):  # mel-space model (CLIPSonic §3)
                return vae.normalise(mel)
            return vae.encode(mel.to(vae.dtype)).latent_dist.mean.float() * vae.config.scaling_factor

    def masks_for(latents: torch.Tensor, pick) -> torch.Tensor:
        shape = tuple(latents.shape[2:])
        return torch.stack([torch.from_numpy(pick(shape)) for _ in range(len(latents))])[:, None].to(latents)

    def train_step(batches: list[dict[str, Any]]) -> dict[str, float]:
        total = 0.0
        for batch in batches:
            latents = latents_of(batch)
            rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=session.generator)))
            mask = masks_for(latents, lambda shape, rng=rng: generators[int(rng.integers(len(generators)))](shape, rng))
            condition = conditioner.from_batch(batch, session.generator)
            condition = drop_condition(
                condition, conditioner.null(len(condition)), config.ldm.cfg_dropout, session.generator
            )
            denoiser = WithContext(model, context(latents, mask))
            with session.accelerator.autocast():
                loss = diffusion_loss(
                    denoiser, scheduler, latents, conditioner.unet_kwargs(condition), session.generator
                )
            session.accelerator.backward(loss / len(batches))
            total += float(loss.detach()) / len(batches)
        grad_norm = session.clip_and_step(model, opt, schedule)
        if ema is not None:
            ema.step(unet.parameters())
        return {"loss": total, "grad_norm": grad_norm}

    @torch.no_grad()
    def validate(step: int) -> dict[str, float]:
        from training.data.masks import wide_narrow

        if ema is not None:
            ema.store(unet.parameters())
            ema.copy_to(unet.parameters())
        unet.eval()
        saved = session.generator.get_state()
        sums = {"wide": [0.0, 0], "narrow": [0.0, 0]}
        for kind in sums:
            session.generator.manual_seed(config.seed + VALID_SEED)
            rng = np.random.default_rng(config.seed + VALID_SEED)
            example = with_frames(mel_example(data.profile, frames, random_crop=False), conditioner.name)
            for batch in iter_batches(data, data.valid_split, example, batch_size=data.batch_size):
                latents = latents_of(batch)
                mask = masks_for(latents, lambda shape, kind=kind, rng=rng: wide_narrow(shape, kind, rng))
                condition = conditioner.from_batch(batch, session.generator)
                denoiser = WithContext(unet, context(latents, mask))
                loss = diffusion_loss(
                    denoiser, scheduler, latents, conditioner.unet_kwargs(condition), session.generator
                )
                sums[kind][0] += float(loss) * len(latents)
                sums[kind][1] += len(latents)
        session.generator.set_state(saved)
        unet.train()
        if ema is not None:
            ema.restore(unet.parameters())
        return {f"valid_loss_{kind}": total / count for kind, (total, count) in sums.items() if count}

    run(session, state, loader, train_step, validate=validate)
    out = config.inpaint_dir / "model"
    if session.is_main:
        _export(config, bundle, unet, ema, out)
    session.accelerator.wait_for_everyone()
    session.logs.close()
    return out


def _export(config: TrainConfig, bundle, unet, ema, out: Path) -> None:
    import json
    from dataclasses import replace

    from training.models.pipeline import save_pipeline

    if ema is not None:
        ema.copy_to(unet.parameters())
    info = {
        **bundle.info,
        "inpaint": json.loads(json.dumps(config.inpaint.model_dump(mode="json"), default=str)),
    }
    save_pipeline(out, replace(bundle, unet=unet.eval(), info=info), clap_dir=config.ldm.encoders.clap)
    log.info("inpainting model saved to %s", out)


if __name__ == "__main__":  # `python -m training.tasks.inpaint --config …`
    command(__doc__, train)
