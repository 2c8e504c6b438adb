"""`t2a train vq`: the spectrogram codebook (Diffsound §III-B VQ-VAE, Li et al. 2023 §2.1 VQGAN).

A diffusers VQModel over the profile's mels (training/models/vq.py), trained with the loss of Diffsound
eq. 2–3 or Li et al. 2023 eq. 3–4 (codebook.loss), the patch discriminator (training/models/discriminator.py)
joining after codebook.loss.adversarial_start steps, and the VGGish-ish perceptual term when
codebook.loss.perceptual names a `t2a train vggishish` model. Each step: one generator step, the codebook
health logged (usage, perplexity, dead_codes), every codebook.restart_every steps the dead codes restarted
at encoder outputs (`restarted`), then one discriminator step.

Outputs (<run>/vq/): checkpoints/ (TrainState: model, discriminator, health), logs/, metrics.jsonl, and
model/ — a VQModel folder that `t2a encode-tokens` reads (its sha256 keys the token shards).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from pipelines.core.features import get_profile
from training.config import TrainConfig
from training.data.loader import iter_batches, make_loader, mel_example, require_split
from training.loop import Session, add_mean, command, run, save_model_atomic
from training.state import TrainState

log = logging.getLogger(__name__)
IMAGES = 2


def train(config: TrainConfig) -> Path:
    from diffusers.training_utils import EMAModel

    from training.models.vggishish import load_vggishish
    from training.models.vq import CodebookHealth, CodebookLoss, VqForward, build_codebook

    cfg, loop = config.codebook, config.codebook.train
    require_split(config.data, config.data.valid_split, "`t2a train vq` validates on data.valid_split: it")
    session = Session(config, loop, config.codebook_dir)
    profile = get_profile(config.data.profile)
    vq = session.configure(build_codebook(cfg))
    perceptual = load_vggishish(cfg.loss.perceptual, session.device) if cfg.loss.perceptual else None
    loss = CodebookLoss(cfg.loss, perceptual)
    health = CodebookHealth(
        cfg.codebook_size if cfg.init is None else vq.config.num_vq_embeddings, cfg.usage_decay, cfg.dead_usage
    )
    opt, schedule = session.optimizer(vq.parameters())
    d_opt, d_schedule = session.optimizer(loss.discriminator_parameters())
    ema = EMAModel(vq.parameters(), decay=loop.ema_decay) if loop.ema_decay else None
    forward = VqForward(vq)
    if loop.compile:
        forward = torch.compile(forward)
    forward, opt = session.accelerator.prepare(forward, opt)
    loss.to(session.device)
    if ema is not None:
        ema.to(session.device)
    loader = make_loader(
        config.data,
        config.data.train_split,
        mel_example(profile.name, config.data.crop_frames, random_crop=True),
        rank=session.rank,
        world_size=session.world_size,
        seed=config.seed,
    )
    state = TrainState(
        models={"model": vq, "discriminator": loss, "health": health},
        optimizers={"model": opt, "discriminator": d_opt},
        schedulers={"model": schedule, "discriminator": d_schedule},
        ema=ema,
        config=config.model_dump(mode="json"),
    )
    last_layer = vq.decoder.conv_out.weight

    def train_step(batches: list[dict[str, Any]]) -> dict[str, float]:
        logs: dict[str, float] = {}
        fakes, latents = [], []
        for batch in batches:
            mel = batch["mel"].to(session.device)
            with session.accelerator.autocast():
                reconstruction, z, z_q, indices = forward(mel)
                mel = mel[:, :, : reconstruction.shape[2], : reconstruction.shape[3]]  # T' = ⌊…⌋: the frames decoded
                total, parts = loss.generator_loss(mel, reconstruction, z, z_q, state.step, last_layer=last_layer)
            session.accelerator.backward(total / len(batches))
            fakes.append((mel, reconstruction.detach().float()))
            latents.append(z.detach())
            add_mean(logs, parts | health.observe(indices), len(batches))
        logs["grad_norm"] = session.clip_and_step(forward, opt, schedule)
        restarted = 0
        if cfg.restart_every and (state.step + 1) % cfg.restart_every == 0:
            restarted = health.restart(vq, torch.cat(latents), session.generator)
        logs["restarted"] = float(restarted)
        if ema is not None:
            ema.step(vq.parameters())
        for mel, fake in fakes:
            d_total, d_parts = loss.discriminator_loss(mel, fake, state.step)
            if d_total.requires_grad:
                (d_total / len(fakes)).backward()
            add_mean(logs, {f"disc_{k}": v for k, v in d_parts.items()}, len(fakes))
        session.average_grads(loss)
        d_opt.step()
        d_schedule.step()
        d_opt.zero_grad(set_to_none=True)
        return logs

    def validate(step: int) -> dict[str, float]:
        return _validate(session, vq, ema, config, profile.name, step)

    run(session, state, loader, train_step, validate=validate)
    if session.is_main:
        if ema is not None:
            ema.copy_to(vq.parameters())
        save_model_atomic(vq, config.codebook_dir / "model")
        log.info("codebook saved to %s", config.codebook_dir / "model")
    session.accelerator.wait_for_everyone()
    session.logs.close()
    return config.codebook_dir / "model"


@torch.no_grad()
def _validate(session: Session, vq, ema, config: TrainConfig, profile: str, step: int) -> dict[str, float]:
    """Reconstruction error (L1 and squared) of the validation mels through the codebook, and its usage there."""
    from training.models.vq import codebook_size, decode_indices, encode_indices

    if ema is not None:
        ema.store(vq.parameters())
        ema.copy_to(vq.parameters())
    vq.eval()
    l1 = l2 = count = 0.0
    used = torch.zeros(codebook_size(vq), dtype=torch.bool)
    example = mel_example(profile, config.data.crop_frames, random_crop=False)
    for batch in iter_batches(config.data, config.data.valid_split, example, batch_size=config.data.batch_size):
        mel = batch["mel"].to(session.device)
        indices = encode_indices(vq, mel)
        used[indices.flatten().cpu()] = True
        reconstruction = decode_indices(vq, indices)
        diff = reconstruction - mel[:, :, : reconstruction.shape[2], : reconstruction.shape[3]]
        l1 += float(diff.abs().mean()) * len(mel)
        l2 += float(diff.square().mean()) * len(mel)
        if count < IMAGES:
            session.logs.image(step, "valid/mel_0", mel[0, 0])
            session.logs.image(step, "valid/reconstruction_0", reconstruction[0, 0])
        count += len(mel)
    vq.train()
    if ema is not None:
        ema.restore(vq.parameters())
    if not count:
        return {}
    return {"valid_l1": l1 / count, "valid_l2": l2 / count, "valid_usage": float(used.double().mean())}


if __name__ == "__main__":  # `python -m training.tasks.vq --config …` (accelerate launch, torchrun)
    command(__doc__, train)
