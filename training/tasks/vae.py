"""`t2a train vae`: the mel VAE (AudioLDM App. C) on the corpus shards.

The VAE compresses a mel [1, T, n_mels] by r = 4 into C = 8 latent channels. Its loss is L1
reconstruction + KL (the "Gaussian constraint") + a PatchGAN adversarial term that joins after
`vae.loss.adversarial_start` steps (training/models/vae.py). The generator (the VAE) and the
discriminator take one optimizer step each per training step.

Outputs (<run>/vae/): checkpoints/ (TrainState), logs/ (TensorBoard), metrics.jsonl, and model/ — an
AutoencoderKL folder with `scaling_factor` calibrated on training latents (1/std), which
`t2a encode-latents` and the LDM read. A re-run resumes from the latest checkpoint.
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
CALIBRATION_BATCHES = 8
IMAGES = 2  # validation reconstructions logged as images


class VaeForward(torch.nn.Module):
    """mel → (reconstruction, posterior moments) in one forward, so DDP sees a forward() call."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, mel: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        moments = (
            self.vae.quant_conv(self.vae.encoder(mel)) if self.vae.quant_conv is not None else self.vae.encoder(mel)
        )
        mean, logvar = moments.chunk(2, dim=1)
        z = mean + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * noise  # the reparameterisation trick
        return self.vae.decode(z).sample, moments


def train(config: TrainConfig) -> Path:
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
    from diffusers.training_utils import EMAModel

    from training.models.vae import VaeLoss, build_vae, compression

    loop = config.vae.train
    require_split(config.data, config.data.valid_split, "`t2a train vae` validates on data.valid_split: it")
    session = Session(config, loop, config.vae_dir)
    profile = get_profile(config.data.profile)
    vae = session.configure(build_vae(config.vae))
    r = compression(vae)
    crop = config.data.crop_frames
    if crop is not None and crop % r:
        raise ValueError(f"data.crop_frames {crop} must be a multiple of the VAE's compression r = {r}")
    if profile.n_mels % r:
        raise ValueError(f"the profile's {profile.n_mels} mel bins must be a multiple of the VAE's compression r = {r}")
    loss = VaeLoss(config.vae.loss)
    opt, schedule = session.optimizer(vae.parameters())
    d_opt, d_schedule = session.optimizer(loss.parameters())
    ema = EMAModel(vae.parameters(), decay=loop.ema_decay) if loop.ema_decay else None
    forward = VaeForward(vae)
    if loop.compile:
        forward = torch.compile(forward)
    forward, opt = session.accelerator.prepare(forward, opt)
    loss.to(session.device)
    if ema is not None:
        ema.to(session.device)
    loader = make_loader(
        config.data,
        config.data.train_split,
        mel_example(profile.name, crop, random_crop=True, wave_mixup=config.vae.mixup),
        rank=session.rank,
        world_size=session.world_size,
        seed=config.seed,
    )
    state = TrainState(
        models={"model": vae, "discriminator": loss},
        optimizers={"model": opt, "discriminator": d_opt},
        schedulers={"model": schedule, "discriminator": d_schedule},
        ema=ema,
        config=config.model_dump(mode="json"),
    )
    last_layer = vae.decoder.conv_out.weight

    def train_step(batches: list[dict[str, Any]]) -> dict[str, float]:
        logs: dict[str, float] = {}
        fakes = []
        for batch in batches:
            mel = batch["mel"].to(session.device)
            with session.accelerator.autocast():
                noise = session.randn(
                    (mel.shape[0], vae.config.latent_channels, mel.shape[2] // r, mel.shape[3] // r), mel
                )
                reconstruction, moments = forward(mel, noise)
                posterior = DiagonalGaussianDistribution(moments.float())
                total, parts = loss.generator_loss(
                    mel, reconstruction.float(), posterior, state.step, last_layer=last_layer
                )
            session.accelerator.backward(total / len(batches))
            fakes.append((mel, reconstruction.detach().float()))
            add_mean(logs, parts, len(batches))
        logs["grad_norm"] = session.clip_and_step(forward, opt, schedule)
        if ema is not None:
            ema.step(vae.parameters())
        for mel, fake in fakes:  # the discriminator's step (hinge loss; zero before adversarial_start)
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
        return _validate(session, vae, ema, config, profile.name, step)

    run(session, state, loader, train_step, validate=validate)
    if session.is_main:
        _export(vae, ema, config, profile.name, session)
    session.accelerator.wait_for_everyone()
    session.logs.close()
    return config.vae_dir / "model"


@torch.no_grad()
def _validate(session: Session, vae, ema, config: TrainConfig, profile: str, step: int) -> dict[str, float]:
    """L1 reconstruction of the validation split's mels (the EMA weights when there are some)."""
    if ema is not None:
        ema.store(vae.parameters())
        ema.copy_to(vae.parameters())
    vae.eval()
    total, count = 0.0, 0
    example = mel_example(profile, config.data.crop_frames, random_crop=False)
    for batch in iter_batches(
        config.data,
        config.data.valid_split,
        example,
        batch_size=config.data.batch_size,
        rank=session.rank,
        world_size=session.world_size,
    ):
        mel = batch["mel"].to(session.device)
        reconstruction = vae.decode(vae.encode(mel).latent_dist.mean).sample
        total += float((reconstruction - mel).abs().mean()) * len(mel)
        count += len(mel)
        if count <= config.data.batch_size:
            for i in range(min(IMAGES, len(mel))):
                session.logs.image(step, f"valid/mel_{i}", mel[i, 0])
                session.logs.image(step, f"valid/reconstruction_{i}", reconstruction[i, 0])
    vae.train()
    if ema is not None:
        ema.restore(vae.parameters())
    total = session.accelerator.reduce(torch.tensor([total, count], device=session.device), reduction="sum")
    return {"valid_l1": float(total[0] / total[1])} if total[1] else {}


def _export(vae, ema, config: TrainConfig, profile: str, session: Session) -> None:
    """model/: the (EMA) weights as an AutoencoderKL folder, with the latent scaling factor calibrated."""
    from training.models.vae import calibrate_scaling

    if ema is not None:
        ema.copy_to(vae.parameters())
    vae.eval()
    example = mel_example(profile, config.data.crop_frames, random_crop=False)
    batches = iter_batches(config.data, config.data.train_split, example, batch_size=config.data.batch_size)
    mels = (b["mel"].to(session.device) for _, b in zip(range(CALIBRATION_BATCHES), batches))
    scaling = calibrate_scaling(vae, mels)
    vae.register_to_config(scaling_factor=scaling)
    save_model_atomic(vae, config.vae_dir / "model")
    log.info("VAE saved to %s (scaling_factor %.4f)", config.vae_dir / "model", scaling)


if __name__ == "__main__":  # `python -m training.tasks.vae --config …` (accelerate launch, torchrun)
    command(__doc__, train)
