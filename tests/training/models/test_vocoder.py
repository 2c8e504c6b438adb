"""training/models/vocoder.py: HiFi-GAN layout, loading, Griffin-Lim inversion, the differentiable mel, HiFi-GAN losses."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from pipelines.core.features import MelExtractor, get_profile
from training.models.vocoder import (
    GriffinLim,
    TorchMel,
    VocoderLoss,
    build_vocoder,
    load_vocoder,
    mel_to_audio,
    upsample_rates,
)


def _tone_mel(profile: str, frequency: float, frames: int = 100) -> tuple[np.ndarray, MelExtractor]:
    """A 1-s tone's mel [n_mels, frames] and the extractor (the profile cut to `frames`)."""
    p = replace(get_profile(profile), frames=frames, train_frames=None)
    t = np.arange(p.sample_rate) / p.sample_rate
    extractor = MelExtractor(p)
    return extractor((0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), p.sample_rate)[0], extractor


def test_upsample_rates_factorise_the_hop():
    assert upsample_rates(160) == [5, 4, 2, 2, 2]  # AudioLDM's released vocoder
    assert upsample_rates(256) == [4, 4, 4, 4]
    assert upsample_rates(512) == [8, 4, 4, 4]
    for hop in (160, 256, 400, 441, 512):
        assert int(np.prod(upsample_rates(hop))) == hop and len(upsample_rates(hop)) <= 5
    with pytest.raises(ValueError, match="at least 2"):
        upsample_rates(1)


@pytest.mark.parametrize("hop", [160, 256, 400, 512])
def test_build_vocoder_output_is_frames_times_hop(hop):
    vocoder = build_vocoder(64, 16_000, hop, channels=32)
    assert vocoder.config.normalize_before is False and vocoder.config.model_in_dim == 64
    with torch.no_grad():
        assert vocoder(torch.randn(2, 7, 64)).shape == (2, 7 * hop)


def test_load_vocoder_round_trip(tmp_path):
    vocoder = build_vocoder(64, 16_000, 160, channels=32)
    vocoder.save_pretrained(tmp_path / "vocoder")
    loaded = load_vocoder(tmp_path / "vocoder")
    mel = torch.randn(1, 5, 64)
    with torch.no_grad():
        assert torch.equal(loaded(mel), vocoder(mel))
    with pytest.raises(FileNotFoundError, match="no vocoder here"):
        load_vocoder(tmp_path / "missing")


def test_mel_to_audio_with_vocoder_checks_the_layout():
    vocoder = build_vocoder(64, 16_000, 160, channels=32)
    wave = mel_to_audio(torch.randn(2, 9, 64), vocoder, "audioldm")
    assert wave.shape == (2, 9 * 160) and wave.dtype == torch.float32
    with pytest.raises(ValueError, match="80 mels at 16000 Hz"):
        mel_to_audio(torch.randn(1, 9, 80), vocoder, "make-an-audio")


@pytest.mark.parametrize("profile", ["audioldm", "make-an-audio", "diffsound"])
def test_griffin_lim_inverts_a_tone(profile):
    mel, extractor = _tone_mel(profile, 440.0)
    p = extractor.profile
    wave = mel_to_audio(torch.from_numpy(mel.T)[None], None, profile, griffin_lim_iters=32)
    assert wave.shape == (1, 100 * p.hop_length)
    again, _ = extractor(wave[0].numpy(), p.sample_rate)
    inner = slice(2, -2)  # the edge frames see reflection padding of a different signal
    correlation = np.corrcoef(mel[:, inner].ravel(), again[:, inner].ravel())[0, 1]
    other, _ = _tone_mel(profile, 1500.0)
    assert correlation > 0.92  # measured 0.93 (make-an-audio) to 0.98 (audioldm)
    assert correlation > np.corrcoef(other[:, inner].ravel(), again[:, inner].ravel())[0, 1] + 0.3


def test_griffin_lim_is_deterministic_and_checks_its_input():
    mel, _ = _tone_mel("audioldm", 300.0, frames=40)
    batch = torch.from_numpy(np.stack([mel.T, mel.T[::-1].copy()]))
    first = GriffinLim("audioldm", iters=8)(batch)
    assert torch.equal(first, GriffinLim("audioldm", iters=8)(batch))
    # An item's waveform does not depend on its batch, its place in it, or the torch thread count.
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            assert torch.equal(first[0], GriffinLim("audioldm", iters=8)(batch[:1])[0])
            assert torch.equal(first[1], GriffinLim("audioldm", iters=8)(batch[1:])[0])
            assert torch.equal(first, GriffinLim("audioldm", iters=8)(batch))
            assert torch.get_num_threads() == threads  # restored
    finally:
        torch.set_num_threads(before)
    assert GriffinLim("audioldm", iters=8)(batch[:0]).shape == (0, 40 * 160)
    with pytest.raises(ValueError, match=r"\[B, T, 64\]"):
        GriffinLim("audioldm")(batch[0])


@pytest.mark.parametrize("profile", ["audioldm", "make-an-audio", "diffsound"])
def test_torch_mel_matches_the_extractor(profile):
    p = replace(get_profile(profile), train_frames=None)
    rng = np.random.default_rng(0)
    audio = (0.3 * rng.standard_normal(p.sample_rate // 2)).astype(np.float32)
    expected = MelExtractor(p)._log_mel(audio)  # [n_mels, frames], no waveform level steps
    got = TorchMel(profile)(torch.from_numpy(audio)[None])[0].T
    assert got.shape == expected.shape
    assert np.abs(got.numpy() - expected).max() < p.tolerance


@pytest.fixture(scope="module")
def waves() -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.arange(4096) / 16_000
    real = 0.5 * torch.sin(2 * torch.pi * 440 * t).repeat(2, 1)
    fake = 0.5 * torch.randn(2, 4096, generator=torch.Generator().manual_seed(0))
    return real, fake


def test_vocoder_loss_terms_are_finite_and_reach_the_generator(waves):
    torch.manual_seed(0)
    loss_fn = VocoderLoss("audioldm", channels=4)
    real, fake = waves
    fake = fake.clone().requires_grad_(True)
    loss, logs = loss_fn.generator_loss(real, fake)
    assert torch.isfinite(loss) and set(logs) == {"g_adversarial", "g_feature", "g_mel", "g_loss"}
    assert logs["g_mel"] > 0.5 and logs["g_loss"] == pytest.approx(
        logs["g_adversarial"] + 2 * logs["g_feature"] + 45 * logs["g_mel"], rel=1e-4
    )
    loss.backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    same, logs = loss_fn.generator_loss(real, real)
    assert logs["g_mel"] == 0 and logs["g_feature"] == 0


def test_discriminator_loss_decreases(waves):
    torch.manual_seed(0)
    loss_fn = VocoderLoss("audioldm", channels=4, scales=2)
    real, fake = waves
    opt = torch.optim.Adam(loss_fn.parameters(), lr=2e-3)
    history = []
    for _ in range(6):
        loss, logs = loss_fn.discriminator_loss(real, fake.requires_grad_(False))
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(logs["d_loss"])
    assert all(np.isfinite(history)) and history[-1] < 0.7 * history[0]
