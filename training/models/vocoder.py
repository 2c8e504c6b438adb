"""Mel → waveform: AudioLDM's HiFi-GAN vocoder, a Griffin-Lim fallback, and HiFi-GAN's training losses.

AudioLDM App. D inverts its 64-band mels with HiFi-GAN (Kong et al. 2020); diffusers'
AudioLDMPipeline holds it as a transformers `SpeechT5HifiGan`, which takes [B, T, n_mels] and returns
[B, T·hop]. Without a trained vocoder, `GriffinLim` gives a rough but model-free waveform.

    wave = mel_to_audio(mel, vocoder=None, profile="audioldm")   # [B, T, 64] → [B, T·160]
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

from pipelines.core.features import MelExtractor, MelProfile, get_profile

# AudioLDM's released HiFi-GAN for hop 160 (audioldm/hifigan config): keep its rate order.
_KNOWN_RATES = {160: [5, 4, 2, 2, 2]}


def upsample_rates(hop_length: int) -> list[int]:
    """Per-layer upsampling rates whose product is `hop_length`: prime factors, the two smallest merged
    until at most four layers remain (256 → [4, 4, 4, 4], 512 → [8, 4, 4, 4])."""
    if hop_length in _KNOWN_RATES:
        return list(_KNOWN_RATES[hop_length])
    if hop_length < 2:
        raise ValueError(f"vocoder hop_length must be at least 2, got {hop_length}")
    factors, rest, prime = [], hop_length, 2
    while rest > 1:
        while rest % prime == 0:
            factors.append(prime)
            rest //= prime
        prime += 1
    while len(factors) > 4:
        factors.sort()
        factors = [factors[0] * factors[1], *factors[2:]]
    return sorted(factors, reverse=True)


def _kernel(rate: int) -> int:
    # ConvTranspose1d(k, stride=s, padding=(k - s) // 2) outputs exactly s·L when k - s is even:
    # 2·s for even rates, 2·s + 1 for odd ones (AudioLDM's 16 for rate 5 yields 5·L + 1).
    return 2 * rate + rate % 2


def build_vocoder(n_mels: int, sample_rate: int, hop_length: int, *, channels: int = 32) -> SpeechT5HifiGan:
    """A randomly initialised HiFi-GAN generator (V1 residual blocks) for this mel layout."""
    rates = upsample_rates(hop_length)
    if channels < 2 ** len(rates):
        raise ValueError(
            f"vocoder channels={channels} is too small for {len(rates)} upsampling layers; use >= {2 ** len(rates)}"
        )
    config = SpeechT5HifiGanConfig(
        model_in_dim=n_mels,
        sampling_rate=sample_rate,
        upsample_rates=rates,
        upsample_kernel_sizes=[_kernel(rate) for rate in rates],
        upsample_initial_channel=channels,
        normalize_before=False,  # the mels are fed in the profile's own log scale, as AudioLDM does
    )
    return SpeechT5HifiGan(config).eval()


def load_vocoder(path: str | Path) -> SpeechT5HifiGan:
    """A saved SpeechT5HifiGan folder (save_pretrained, or an AudioLDM pipeline's vocoder/)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: no vocoder here (expected a SpeechT5HifiGan folder with config.json); fix vocoder.model or set it to null for Griffin-Lim"
        )
    return SpeechT5HifiGan.from_pretrained(path, local_files_only=True).eval()


def decompress(mel: Tensor, profile: MelProfile) -> Tensor:
    """The profile's compressed mel → mel magnitude (inverse of pipelines.core.features.mel._compress)."""
    if profile.compression == "ln":
        return mel.exp()
    if profile.compression == "log10":
        return torch.pow(10.0, mel)
    if profile.compression == "specvqgan":  # [0, 1] ← (20·log10(m) - 20 + 100) / 100
        return torch.pow(10.0, (mel * 100 - 100 + 20) / 20)
    raise ValueError(f"mel profile {profile.name!r}: unknown compression {profile.compression!r}")


_ONE_THREAD = threading.Lock()


@contextlib.contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """Run torch's CPU ops on one intra-op thread, then restore the count. The thread count is
    process-wide, so callers take turns (a lock): two Griffin-Lims in two threads cannot restore
    each other's count mid-run."""
    with _ONE_THREAD:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


class GriffinLim:
    """Log-mel [B, T, n_mels] → waveform [B, T·hop], through a non-negative inverse of the mel basis and fast
    Griffin-Lim (Perraudin et al. 2013, momentum 0.99 as torchaudio). Frames are centred on t·hop (torch
    `center=True`): for the HiFi-GAN-framed profiles (make-an-audio, clipsonic) half a hop earlier than
    the extractor's.

    Bitwise deterministic: an item's waveform depends on its mel alone — not on the batch it came in,
    its place there, or the torch thread count. Each item is inverted on its own, with the initial phase
    from a generator seeded 0, on one intra-op thread (`one_intra_op_thread`): the matmuls, FFTs and
    overlap-adds of a 1-thread run have one summation order, where a multi-threaded GEMM's depends on
    the thread count and a batched one's on the batch size. Cost: docs/BENCHMARKS.md (Griffin-Lim)."""

    def __init__(self, profile: str, iters: int = 32, *, momentum: float = 0.99, refine: int = 50):
        self.profile = get_profile(profile)
        extractor = MelExtractor(self.profile)
        self.window = extractor.window  # the extractor's Hann of win_length inside n_fft
        self.basis = extractor.basis  # [n_mels, n_freq]
        with one_intra_op_thread():
            self.inverse = torch.linalg.pinv(self.basis.double()).float()  # [n_freq, n_mels]
        self.iters, self.momentum, self.refine = iters, momentum, refine

    @torch.no_grad()
    def __call__(self, mel: Tensor) -> Tensor:
        p = self.profile
        mel = mel.detach().float().cpu()
        if mel.dim() != 3 or mel.shape[-1] != p.n_mels:
            raise ValueError(f"Griffin-Lim ({p.name}) expects a mel [B, T, {p.n_mels}], got {tuple(mel.shape)}")
        with one_intra_op_thread():
            if not len(mel):
                return mel.new_zeros(0, mel.shape[1] * p.hop_length)
            return torch.stack([self._invert(item) for item in mel])

    def _invert(self, mel: Tensor) -> Tensor:
        """One log-mel [T, n_mels] → waveform [T·hop]."""
        p = self.profile
        magnitude = self._magnitude(decompress(mel, p).T.contiguous())  # [n_freq, T]
        # A T·hop-sample signal has T + 1 centred frames: the last one repeats frame T - 1.
        magnitude = torch.cat([magnitude, magnitude[:, -1:]], dim=-1)
        length = mel.shape[0] * p.hop_length
        generator = torch.Generator().manual_seed(0)
        angles = torch.polar(
            torch.ones_like(magnitude), 2 * torch.pi * torch.rand(magnitude.shape, generator=generator)
        )
        previous = torch.zeros_like(angles)
        for _ in range(self.iters):
            rebuilt = self._stft(self._istft(magnitude * angles, length))
            angles = rebuilt - previous * (self.momentum / (1 + self.momentum))
            angles = angles / (angles.abs() + 1e-16)
            previous = rebuilt
        return self._istft(magnitude * angles, length)

    def _magnitude(self, mel: Tensor) -> Tensor:
        """Non-negative |X| with basis @ |X| ≈ mel: the pseudo-inverse, clamped, then Lee & Seung's (2001)
        multiplicative least-squares updates. Clamping alone leaves a pure tone's bins ~1.8 nats off;
        50 updates (a few matmuls) bring that to ~0.4 and a chirp's to ~0.05."""
        basis = self.basis
        magnitude = (self.inverse @ mel).clamp_min(1e-8)
        numerator = basis.T @ mel
        for _ in range(self.refine):
            magnitude = magnitude * numerator / (basis.T @ (basis @ magnitude)).clamp_min(1e-12)
        return magnitude

    def _stft(self, wave: Tensor) -> Tensor:
        p = self.profile
        return torch.stft(
            wave, p.n_fft, p.hop_length, window=self.window, center=True, pad_mode="reflect", return_complex=True
        )

    def _istft(self, spec: Tensor, length: int) -> Tensor:
        p = self.profile
        return torch.istft(spec, p.n_fft, p.hop_length, window=self.window, center=True, length=length)


def mel_to_audio(mel: Tensor, vocoder: SpeechT5HifiGan | None, profile: str, griffin_lim_iters: int = 32) -> Tensor:
    """[B, T, n_mels] → [B, samples] float32 on the CPU, with the vocoder or, without one, Griffin-Lim."""
    if vocoder is None:
        return GriffinLim(profile, griffin_lim_iters)(mel)
    p, config = get_profile(profile), vocoder.config
    if config.model_in_dim != mel.shape[-1] or config.sampling_rate != p.sample_rate:
        raise ValueError(
            f"the vocoder takes {config.model_in_dim} mels at {config.sampling_rate} Hz but the model makes "
            f"{mel.shape[-1]} mels at {p.sample_rate} Hz (profile {profile}); use a vocoder trained on this profile"
        )
    parameter = next(vocoder.parameters())
    with torch.no_grad():
        return vocoder(mel.to(parameter.device, parameter.dtype)).float().cpu()


class TorchMel(nn.Module):
    """Differentiable pipelines.core.features mel: waveform [B, S] → [B, frames_for(S), n_mels] in the profile's
    framing, basis, window and compression (MelExtractor's `_log_mel`, without the waveform level steps)."""

    def __init__(self, profile: str):
        super().__init__()
        self.profile = replace(get_profile(profile), train_frames=None)
        extractor = MelExtractor(self.profile)
        self.register_buffer("basis", extractor.basis.clone(), persistent=False)  # [n_mels, n_freq]
        self.register_buffer("window", extractor.window.clone(), persistent=False)
        # sqrt'(0) is infinite: a floor far below the mel clamp keeps the gradient finite.
        self.eps = self.profile.magnitude_eps or 1e-12

    def forward(self, wave: Tensor) -> Tensor:
        p = self.profile
        padded = F.pad(wave.unsqueeze(1), (p.pad, p.pad), mode="reflect").squeeze(1)
        spec = torch.stft(padded, p.n_fft, p.hop_length, window=self.window, center=False, return_complex=True)
        magnitude = (spec.real.square() + spec.imag.square() + self.eps).sqrt()  # [B, n_freq, frames]
        mel = (self.basis @ magnitude).clamp(min=p.floor)
        if p.compression == "ln":
            mel = mel.log()
        elif p.compression == "log10":
            mel = mel.log10()
        else:
            mel = ((20 * mel.log10() - 20 + 100) / 100).clamp(0.0, 1.0)
        return mel.mT  # [B, frames, n_mels]


def _weight_norm(layer: nn.Module) -> nn.Module:
    return nn.utils.parametrizations.weight_norm(layer)


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN §2.2 MPD sub-discriminator: the waveform folded to [S/p, p], 2-D convs over time only."""

    def __init__(self, period: int, channels: int):
        super().__init__()
        self.period = period
        widths = [1, channels, 4 * channels, 16 * channels, 16 * channels]
        self.convs = nn.ModuleList(
            _weight_norm(nn.Conv2d(a, b, (5, 1), (3 if i < 3 else 1, 1), padding=(2, 0)))
            for i, (a, b) in enumerate(zip(widths, widths[1:]))
        )
        self.post = _weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wave: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = wave.unsqueeze(1)  # [B, 1, S]
        if x.shape[-1] % self.period:
            x = F.pad(x, (0, self.period - x.shape[-1] % self.period), mode="reflect")
        x = x.view(x.shape[0], 1, -1, self.period)  # [B, 1, S/p, p]
        return _judge_stack(x, self.convs, self.post)


class ScaleDiscriminator(nn.Module):
    """HiFi-GAN §2.2 MSD sub-discriminator (strided, grouped 1-D convs), narrowed by `channels`."""

    def __init__(self, channels: int):
        super().__init__()
        c = channels
        self.convs = nn.ModuleList(
            [
                _weight_norm(nn.Conv1d(1, c, 15, 1, padding=7)),
                _weight_norm(nn.Conv1d(c, 2 * c, 41, 4, groups=4, padding=20)),
                _weight_norm(nn.Conv1d(2 * c, 4 * c, 41, 4, groups=4, padding=20)),
                _weight_norm(nn.Conv1d(4 * c, 4 * c, 5, 1, padding=2)),
            ]
        )
        self.post = _weight_norm(nn.Conv1d(4 * c, 1, 3, 1, padding=1))

    def forward(self, wave: Tensor) -> tuple[Tensor, list[Tensor]]:
        return _judge_stack(wave.unsqueeze(1), self.convs, self.post)


def _judge_stack(x: Tensor, convs: nn.ModuleList, post: nn.Module) -> tuple[Tensor, list[Tensor]]:
    """A sub-discriminator's conv stack (leaky ReLU 0.1): (flattened logits, every layer's features)."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        features.append(x)
    x = post(x)
    features.append(x)
    return x.flatten(1), features


class VocoderLoss(nn.Module):
    """HiFi-GAN's objective (Kong et al. 2020, §2.3): LSGAN adversarial losses over a multi-period
    (periods 2, 3, 5, 7, 11) and a multi-scale discriminator, feature matching (λ_fm = 2) and the
    mel L1 (λ_mel = 45) in the profile's own mel. Holds the discriminators: give `parameters()` to
    the discriminator's optimizer, and zero its gradients before the discriminator step — the
    generator loss back-propagates through the discriminators too, as in HiFi-GAN's train.py."""

    def __init__(
        self,
        profile: str,
        *,
        channels: int = 16,
        mel_weight: float = 45.0,
        scales: int = 3,
        feature_weight: float = 2.0,
    ):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in (2, 3, 5, 7, 11))
        self.scales = nn.ModuleList(ScaleDiscriminator(channels) for _ in range(scales))
        self.mel = TorchMel(profile)
        self.mel_weight, self.feature_weight = mel_weight, feature_weight

    def _judge(self, wave: Tensor) -> list[tuple[Tensor, list[Tensor]]]:
        outputs = [d(wave) for d in self.discriminators]
        for i, d in enumerate(self.scales):
            if i:  # the MSD's scales see the raw wave, then ×2 and ×4 average-pooled (HiFi-GAN §2.2)
                wave = F.avg_pool1d(wave.unsqueeze(1), 4, 2, padding=2).squeeze(1)
            outputs.append(d(wave))
        return outputs

    def discriminator_loss(self, wave_real: Tensor, wave_fake: Tensor) -> tuple[Tensor, dict]:
        real, fake = self._judge(wave_real), self._judge(wave_fake.detach())
        loss = sum(((1 - r) ** 2).mean() + (f**2).mean() for (r, _), (f, _) in zip(real, fake))
        return loss, {"d_loss": float(loss.detach())}

    def generator_loss(self, wave_real: Tensor, wave_fake: Tensor) -> tuple[Tensor, dict]:
        with torch.no_grad():
            real = self._judge(wave_real)
        fake = self._judge(wave_fake)
        adversarial = sum(((1 - f) ** 2).mean() for f, _ in fake)
        matching = sum(F.l1_loss(b, a) for (_, ra), (_, fa) in zip(real, fake) for a, b in zip(ra, fa))
        mel_real, mel_fake = self.mel(wave_real), self.mel(wave_fake)
        frames = min(mel_real.shape[1], mel_fake.shape[1])
        mel = F.l1_loss(mel_fake[:, :frames], mel_real[:, :frames])
        loss = adversarial + self.feature_weight * matching + self.mel_weight * mel
        terms = {"g_adversarial": adversarial, "g_feature": matching, "g_mel": mel, "g_loss": loss}
        return loss, {name: float(value.detach()) for name, value in terms.items()}
