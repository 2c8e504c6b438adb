"""`t2a train vocoder`: a HiFi-GAN (transformers.SpeechT5HifiGan, AudioLDM's vocoder) on the corpus audio.

Each example is a random segment of a shard's FLAC at the mel profile's rate, levelled as the
shard mels were (pipelines.core.features MelExtractor.condition); its mel comes from the same waveform
through the profile's differentiable mel (training.models.vocoder.TorchMel), so input and target
are aligned to the sample. Loss: HiFi-GAN's (Kong et al. 2020 §2.3) — LSGAN over multi-period and
multi-scale discriminators, feature matching, 45·mel L1 (training.models.vocoder.VocoderLoss).

Outputs (<run>/vocoder/): checkpoints/, logs/, metrics.jsonl and model/ (a SpeechT5HifiGan folder);
set `vocoder.model` to it so `t2a train ldm` packs it and `t2a sample` uses it instead of Griffin-Lim.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from pipelines.core.features import MelExtractor, get_profile
from pipelines.shard import contract
from training.config import TrainConfig
from training.data.loader import make_loader
from training.loop import Session, add_mean, command, run, save_model_atomic
from training.state import TrainState

log = logging.getLogger(__name__)


class WaveExample:
    """A shard sample → {"key", "wave": float32 [segment_frames · hop]} (random segment, zero-padded)."""

    def __init__(self, profile: str, segment_frames: int):
        self.profile = get_profile(profile)
        self.samples = segment_frames * self.profile.hop_length
        self._extractor: MelExtractor | None = None

    def wants(self, member: str) -> bool:
        return member in (contract.JSON, contract.AUDIO)

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if contract.AUDIO not in sample:
            raise ValueError("no flac member: the vocoder trains on shards written with audio")
        self._extractor = self._extractor or MelExtractor(self.profile)
        audio, rate = sf.read(io.BytesIO(sample[contract.AUDIO]), dtype="float32", always_2d=False)
        wave = self._extractor.condition(self._extractor.resample(audio, rate))
        start = int(rng.integers(0, max(len(wave) - self.samples, 0) + 1))
        segment = np.zeros(self.samples, np.float32)
        piece = wave[start : start + self.samples]
        segment[: len(piece)] = piece
        return {"key": sample["__key__"], "wave": torch.from_numpy(segment)}


def train(config: TrainConfig) -> Path:
    from training.models.vocoder import TorchMel, VocoderLoss, build_vocoder, load_vocoder

    voc, loop = config.vocoder, config.vocoder.train
    session = Session(config, loop, config.vocoder_dir)
    profile = get_profile(config.data.profile)
    vocoder = (
        load_vocoder(voc.init)
        if voc.init
        else build_vocoder(profile.n_mels, profile.sample_rate, profile.hop_length, channels=voc.channels)
    )
    session.configure(vocoder.train())
    loss = VocoderLoss(
        profile.name,
        channels=voc.loss.discriminator_channels,
        mel_weight=voc.loss.mel_weight,
        feature_weight=voc.loss.feature_weight,
    ).to(session.device)
    to_mel = TorchMel(profile.name).to(session.device)
    opt, schedule = session.optimizer(vocoder.parameters())
    d_opt, d_schedule = session.optimizer(loss.parameters())
    model, opt = session.accelerator.prepare(vocoder, opt)
    loader = make_loader(
        config.data,
        config.data.train_split,
        WaveExample(profile.name, voc.segment_frames),
        rank=session.rank,
        world_size=session.world_size,
        seed=config.seed,
    )
    state = TrainState(
        models={"model": vocoder, "discriminator": loss},
        optimizers={"model": opt, "discriminator": d_opt},
        schedulers={"model": schedule, "discriminator": d_schedule},
        config=config.model_dump(mode="json"),
    )

    def train_step(batches: list[dict[str, Any]]) -> dict[str, float]:
        logs: dict[str, float] = {}
        pairs = []
        for batch in batches:
            wave = batch["wave"].to(session.device)  # [B, S]
            mel = to_mel(wave)[:, : voc.segment_frames]  # [B, frames, n_mels]: centred framing gives one frame more
            with session.accelerator.autocast():
                fake = model(mel)[:, : wave.shape[1]]
            total, parts = loss.generator_loss(wave, fake.float())
            session.accelerator.backward(total / len(batches))
            pairs.append((wave, fake.detach().float()))
            add_mean(logs, parts, len(batches))
        logs["grad_norm"] = session.clip_and_step(model, opt, schedule)
        d_opt.zero_grad(set_to_none=True)  # the generator loss left gradients in the discriminators
        for wave, fake in pairs:
            d_total, parts = loss.discriminator_loss(wave, fake)
            (d_total / len(pairs)).backward()
            add_mean(logs, parts, len(pairs))
        session.average_grads(loss)
        d_opt.step()
        d_schedule.step()
        d_opt.zero_grad(set_to_none=True)
        return logs

    run(session, state, loader, train_step)
    if session.is_main:
        vocoder.eval()
        save_model_atomic(vocoder, config.vocoder_dir / "model")
        log.info("vocoder saved to %s", config.vocoder_dir / "model")
    session.accelerator.wait_for_everyone()
    session.logs.close()
    return config.vocoder_dir / "model"


if __name__ == "__main__":  # `python -m training.tasks.vocoder --config …` (accelerate launch, torchrun)
    command(__doc__, train)
