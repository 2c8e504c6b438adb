"""AudioLDM App. C: the VAE trains with mixup — §3.3 eq. 8 on waveforms, the mel computed from the mix."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from pipelines.core.features import MelExtractor, get_profile
from pipelines.shard import contract
from training.config import MixupConfig
from training.data.examples import mel_example


def flac(freq: float, seconds: float) -> bytes:
    t = np.arange(int(seconds * 48000)) / 48000
    buffer = io.BytesIO()
    sf.write(buffer, (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 48000, format="FLAC", subtype="PCM_24")
    return buffer.getvalue()


def sample(key: str, freq: float, seconds: float) -> dict:
    extractor = MelExtractor(get_profile("audioldm"))
    audio = extractor.resample(*sf.read(io.BytesIO(flac(freq, seconds)), dtype="float32"))
    mel, real = extractor.mel(audio)
    meta = {"selected_caption": key, "mels": {"audioldm": {"real_frames": real}}}
    return {"__key__": key, "json": meta, contract.mel_member("audioldm"): mel, "flac": flac(freq, seconds)}


def test_waveforms_are_mixed_and_the_mel_is_computed_from_the_mix():
    first, partner = sample("a", 440.0, 1.0), sample("b", 3000.0, 0.6)
    first["__recent__"] = (partner, first)  # the sample itself is never its own partner
    example = mel_example("audioldm", 64, random_crop=False, wave_mixup=MixupConfig(probability=1.0, alpha=5.0))
    assert example.recent > 0 and example.wants("flac")
    out = example(first, np.random.default_rng(7))
    replay = np.random.default_rng(7)
    replay.random(), replay.integers(1)  # the probability draw, the partner draw
    lam = replay.beta(5.0, 5.0)
    extractor = MelExtractor(get_profile("audioldm"))
    x1 = extractor.resample(*sf.read(io.BytesIO(first["flac"]), dtype="float32"))
    x2 = extractor.resample(*sf.read(io.BytesIO(partner["flac"]), dtype="float32"))
    mixed = lam * x1 + (1 - lam) * np.pad(x2, (0, len(x1) - len(x2)))
    expected, _ = extractor.mel(mixed.astype(np.float32))
    np.testing.assert_allclose(out["mel"][0].numpy(), expected[:, :64].T, atol=1e-4)
    plain = mel_example("audioldm", 64, random_crop=False)(dict(first), np.random.default_rng(7))
    assert not np.allclose(plain["mel"].numpy(), out["mel"].numpy())  # the 3-kHz partner is in the mix
    alone = dict(first, __recent__=(first,))  # no other recent clip: the sample as it is
    np.testing.assert_array_equal(example(alone, np.random.default_rng(7))["mel"].numpy(), plain["mel"].numpy())
