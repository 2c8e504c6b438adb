"""Example functions, batch transforms and sample filters for the streaming loader (training/data/loader.py).

An example function maps one decoded webdataset sample ({"__key__", "json": dict, "mel.<profile>.npy":
ndarray, "flac": bytes, ...}) and a seeded generator to an example dict, or None to skip it. It may
carry two attributes the loader reads:

    wants(member) -> bool   the members it reads; the tar stream skips the others unread
                            (frames and FLAC are most of a shard's bytes)
    recent: int             it receives sample["__recent__"], the slot's last `recent` raw (undecoded)
                            samples of the epoch (the VAE's mixup partners), rebuilt exactly on resume

Mels and latents come out as float32 tensors (torch casts and transposes float16 three times faster
than numpy), embeddings as numpy arrays; `data_stream.collate` stacks both. Mels are in the
AudioLDM/diffusers layout [1, T, n_mels], the transpose of the shard's [n_mels, frames].
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
import torch

from pipelines.core.features import MelExtractor, get_profile, load_audio
from pipelines.annotate.prompts.mixup import mixup
from pipelines.annotate.prompts.reprogram import Event, reprogram
from pipelines.annotate.prompts.source_text import clean_source_text
from pipelines.shard import contract
from pipelines.shard.contract import ContractError
from pipelines.shard.reader import decode_member

RESERVOIR = 16  # recent samples the VAE's waveform mixup draws its partner from
NORMALISED = ("clap_audio", "clip_image_mean", "clip_image")  # L2-normalised embeddings (per row)


def caption_of(meta: dict) -> str:
    """The caption to train on: the selected one, else the first human caption, else the label text,
    else the uploader's text cleaned as annotate cleans it (Freesound descriptions, before annotation)."""
    if meta.get("selected_caption"):
        return meta["selected_caption"]
    human = [c["text"] for c in meta.get("captions", []) if c.get("kind") == "human"]
    if human or meta.get("label_text"):
        return human[0] if human else meta["label_text"]
    uploaded = next((c["text"] for c in meta.get("captions", []) if c.get("kind") == "source_text"), None)
    title = (meta.get("meta") or {}).get("title") or (meta.get("meta") or {}).get("name")
    return (clean_source_text(title, uploaded) or "") if uploaded or title else ""


def _conditions(sample: dict, caption: str) -> dict:
    """What every example carries besides its mel or latent: caption, embeddings (float32), event count."""
    found = {name: sample.get(contract.embedding_member(name)) for name in contract.EMBEDDINGS}
    embeddings = {name: np.array(array, dtype=np.float32) for name, array in found.items() if array is not None}
    return {"caption": caption, **embeddings, "event_count": int(sample[contract.JSON].get("event_count", 0))}


def _crop_start(total: int, length: int, real: int, rng: np.random.Generator, random_crop: bool) -> int:
    """Start uniform in [0, max(real − length, 0)]: the window never starts in the padding."""
    if length > total:
        raise ValueError(f"a crop of {length} is longer than the {total} stored; lower data.crop_frames")
    return int(rng.integers(0, max(min(real, total) - length, 0) + 1)) if random_crop else 0


def mbtg_caption(meta: dict, key: str, caption: str, mbtg, rng: np.random.Generator) -> str:
    """Diffsound §IV-C / Algorithm 3: with probability mbtg.probability, a mask-based text of the sample's
    labels drawn now (from the loader's seeded, checkpointed generator: a new draw every epoch, the same
    draws after a resume), with mbtg.mask_token; the caption as it is otherwise, or without labels."""
    if mbtg is None or rng.random() >= mbtg.probability:
        return caption
    from pipelines.annotate.prompts.mbtg import mbtg_text

    names = [label["name"] for label in meta.get("labels") or [] if label.get("name")]
    draw = int(rng.integers(2**62))
    return mbtg_text(names, f"{key}/{draw}", mbtg.mask_token, mbtg.counts) or caption


def _active(mbtg):
    if mbtg is None or not mbtg.probability:
        return None
    if not mbtg.mask_token:
        raise ValueError("data.augment.mbtg needs the text encoder's mask token (set data.augment.mbtg.mask_token)")
    return mbtg


class MelExample:
    """mel_example(...): a shard sample → {"key", "mel" [1, T, n_mels], "caption", embeddings, "event_count"}
    (+ "wave": the composed waveform of a sample the audio augmentations changed, None for the others)."""

    def __init__(
        self, profile: str, crop_frames: int | None, random_crop: bool, reprogram_config=None, mbtg=None, wave_mixup=None,
        clips=None, mixup=None, clap_features=None,
    ):
        self.mbtg = _active(mbtg)
        self.profile, self.member = profile, contract.mel_member(profile)
        self.crop_frames, self.random_crop = crop_frames, random_crop
        self.augment = AudioAugment.of(profile, reprogram_config, mixup, clips, clap_features)
        self.wave_mixup = wave_mixup if wave_mixup is not None and wave_mixup.probability > 0 else None
        self.recent = RESERVOIR if self.wave_mixup else 0
        self._extractor: MelExtractor | None = None  # built in the worker that needs it

    def wants(self, member: str) -> bool:
        kind = contract.member_kind(member)
        audio = self.recent > 0 or self.augment is not None
        return member in (contract.JSON, self.member) or kind == "embedding" or (kind == "audio" and audio)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        meta, mel = sample[contract.JSON], sample[self.member]
        if mel.ndim != 2:
            raise ValueError(f"{self.member} is {list(mel.shape)}, not [n_mels, frames]")
        real = int(meta["mels"][self.profile]["real_frames"])
        caption = mbtg_caption(meta, sample["__key__"], caption_of(meta), self.mbtg, rng)
        wave = None
        if self.augment is not None:
            changed = self.augment(sample["__key__"], sample.get(contract.AUDIO), caption, mel.shape, rng)
            if changed is not None:
                mel, real, caption, wave = changed
        elif self.wave_mixup and rng.random() < self.wave_mixup.probability and contract.AUDIO in sample:
            mel, real = self._mixed(sample, mel, real, rng)
        length = self.crop_frames or mel.shape[1]
        start = _crop_start(mel.shape[1], length, real, rng, self.random_crop)
        window = torch.from_numpy(mel[:, start : start + length]).float().T.contiguous()  # [T, n_mels]
        extra = {"wave": wave, "clap_input": self.augment.clap_input(wave)} if self.augment is not None else {}
        return {"key": sample["__key__"], "mel": window[None], **_conditions(sample, caption), **extra}

    def _mixed(self, sample: dict, mel: np.ndarray, real: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """AudioLDM §3.3 eq. 8 on waveforms (App. C: for the VAE): λ·x₁ + (1 − λ)·x₂, λ ~ Beta(α, α), with x₂ a
        clip of the slot's recent ones (the shorter zero-padded), and the mel computed from the mix. Without
        another recent clip with audio the sample stays as it is."""
        partners = [raw for raw in sample.get("__recent__", ()) if raw.get("__key__") != sample["__key__"] and contract.AUDIO in raw]
        if not partners:
            return mel, real
        partner = partners[int(rng.integers(len(partners)))]
        extractor = self.extractor()
        first = extractor.resample(*load_audio(io.BytesIO(sample[contract.AUDIO])))
        second = extractor.resample(*load_audio(io.BytesIO(partner[contract.AUDIO])))
        mixed, _ = mixup(first, second, rng, self.wave_mixup.alpha)
        return _fitted(extractor, mixed, mel.shape, self.profile)

    def extractor(self) -> MelExtractor:
        if self._extractor is None:
            self._extractor = MelExtractor(get_profile(self.profile))
        return self._extractor

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_extractor": None}  # rebuilt where it runs (spawned workers)


def _fitted(extractor: MelExtractor, audio: np.ndarray, shape: tuple[int, ...], profile: str) -> tuple[np.ndarray, int]:
    """The mel of `audio` fitted to the stored [n_mels, frames]: cut, or filled with the profile's silence."""
    mel, real = extractor.mel(audio)
    n_mels, frames = shape
    if mel.shape[0] != n_mels:
        raise ValueError(f"profile {profile!r} computes {mel.shape[0]} mel bins, the shard stores {n_mels}")
    if mel.shape[1] < frames:
        mel = np.concatenate([mel, np.repeat(extractor.silence[:, None], frames - mel.shape[1], axis=1)], axis=1)
    return mel[:, :frames], min(real, frames)


class AudioAugment:
    """The on-the-fly audio augmentations of the LDM, both drawn from the example's seeded generator (so a
    resumed run draws the same ones) and both reading other clips' audio through a ClipIndex
    (training/data/clips.py), decoded only when drawn:

    - Make-An-Audio §3.2.2 dynamic reprogramming: with `reprogram.probability`, N ~ U(reprogram.counts)
      events drawn from D, the corpus's single-event clips (never the clip itself), joined with the clip
      by the App. F templates (pipelines.annotate.prompts.reprogram), the caption composed with them;
    - AudioLDM §3.3 eq. 8 on waveforms (`mixup.domain: waveform`): with `mixup.probability`, x = λ·x₁ +
      (1 − λ)·x₂, λ ~ Beta(α, α), x₂ a clip of the index drawn uniformly; the caption is the first's.

    Either way the mel is computed from the new waveform, which is returned too: the training step
    recomputes the CLAP audio embedding from it (and the latent, when latents are pre-encoded); with
    `clap_features` (training.models.conditioning.ClapAudioFeatures) the CLAP input features of the
    waveform are computed here, in the loader's workers, and the step runs only the CLAP tower. A clip
    without audio (none in the sample, none in the index) stays as it is.
    """

    def __init__(self, profile: str, reprogram, mixup, clips, clap_features=None):
        self.profile, self.reprogram, self.mixup, self.clips = profile, reprogram, mixup, clips
        self.clap_features = clap_features
        self._extractor: MelExtractor | None = None

    def clap_input(self, wave: np.ndarray | None) -> np.ndarray | None:
        """The CLAP input features of a changed sample's waveform, computed here in the loader (its workers)
        so that the training step only runs the CLAP tower; None without `clap_features` or a change."""
        if wave is None or self.clap_features is None:
            return None
        return self.clap_features(wave, self.extractor().profile.sample_rate)

    @classmethod
    def of(cls, profile: str, reprogram, mixup, clips, clap_features=None) -> AudioAugment | None:
        reprogram = reprogram if reprogram is not None and reprogram.probability > 0 else None
        mixup = mixup if mixup is not None and mixup.probability > 0 else None
        if reprogram is None and mixup is None:
            return None
        if clips is None:
            raise ValueError("reprogramming and waveform mixup draw other clips' audio: give the ClipIndex (clips=)")
        return cls(profile, reprogram, mixup, clips, clap_features)

    def __call__(self, key: str, audio: bytes | None, caption: str, shape: tuple[int, ...], rng: np.random.Generator):
        """(mel [n_mels, frames], real frames, caption, waveform) of the changed sample, or None."""
        if self.reprogram is not None and rng.random() < self.reprogram.probability:
            own = self._audio(key, audio)
            if own is None:
                return None
            wave, caption = self._reprogrammed(key, own, caption, rng)
        elif self.mixup is not None and rng.random() < self.mixup.probability:
            own = self._audio(key, audio)
            partner = self._partner(key, rng)
            if own is None or partner is None:
                return None
            wave, _ = mixup(own, partner, rng, self.mixup.alpha)
        else:
            return None
        mel, real = _fitted(self.extractor(), wave, shape, self.profile)
        return mel, real, caption, wave.astype(np.float32)

    def _audio(self, key: str, audio: bytes | None) -> np.ndarray | None:
        if audio is None:
            row = self.clips.find(key)
            if row is None:
                return None
            audio = self.clips.audio(row)
        return self._decode(audio)

    def _decode(self, audio: bytes) -> np.ndarray:
        return self.extractor().resample(*load_audio(io.BytesIO(audio)))

    def _partner(self, key: str, rng: np.random.Generator) -> np.ndarray | None:
        own, total = self.clips.find(key), len(self.clips)
        if total - (own is not None) < 1:
            return None
        row = int(rng.integers(total - (own is not None)))
        row += own is not None and row >= own
        return self._decode(self.clips.audio(row))

    def _reprogrammed(self, key: str, audio: np.ndarray, caption: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """The clip joined with N events of D. The paper does not say how a joined clip fits its 10-s window:
        here the clip and each event keep their first 1/(N + 1) of the window, so that every event the
        caption names is heard."""
        own = self.clips.find(key)
        pool = self.clips.events[self.clips.events != own] if own is not None else self.clips.events
        n = min(int(rng.choice(np.asarray(self.reprogram.counts))), len(pool))
        if not n:
            return audio, caption
        limit = self.extractor().profile.samples_needed // (n + 1)
        rows = rng.choice(pool, size=n, replace=False)
        events = [Event(self._decode(self.clips.audio(int(row)))[:limit], self.clips.event_label(int(row))) for row in rows]
        return reprogram(audio[:limit], caption, events, rng, counts=[n])

    def extractor(self) -> MelExtractor:
        if self._extractor is None:
            self._extractor = MelExtractor(get_profile(self.profile))
        return self._extractor

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_extractor": None}


def mel_example(
    profile: str,
    crop_frames: int | None = None,
    *,
    random_crop: bool = True,
    reprogram=None,
    mbtg=None,
    wave_mixup=None,
    clips=None,
    mixup=None,
    clap_features=None,
) -> MelExample:
    """Mel examples of `profile` (T = crop_frames, or every stored frame); `reprogram` is an optional
    training.config.ReprogramConfig and `mixup` an optional training.config.MixupConfig mixing waveforms
    in the LDM (AudioLDM §3.3), both drawing other clips from `clips` (a training.data.clips.ClipIndex; see
    AudioAugment); `mbtg` an optional training.config.MbtgConfig with its mask token resolved; `wave_mixup`
    an optional MixupConfig mixing waveforms with a recent clip before the mel (AudioLDM App. C, the VAE's mixup)."""
    return MelExample(profile, crop_frames, random_crop, reprogram, mbtg, wave_mixup, clips, mixup, clap_features)


class LatentExample:
    """latent_example(...): a latent-shard sample → {"key", "latent" [2C, T, W], "caption", embeddings, "event_count"}.

    With `augment` (an AudioAugment; needs `profile`), a sample it changes comes out with "latent" None, "mel"
    [1, T·r, n_mels] (the new mel's window over the same rows) and "wave"; the training step encodes that mel
    with the VAE (training/tasks/ldm.py). The others carry "mel" and "wave" None."""

    def __init__(self, crop_rows: int | None, random_crop: bool, profile: str | None, mbtg=None, augment=None):
        self.crop_rows, self.random_crop, self.profile = crop_rows, random_crop, profile
        self.mbtg = _active(mbtg)
        if augment is not None and profile is None:
            raise ValueError("latent_example: audio augmentation needs the mel profile (profile=)")
        self.augment = augment

    def wants(self, member: str) -> bool:
        return member in (contract.JSON, contract.LATENT) or contract.member_kind(member) == "embedding"

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        meta, latent = sample[contract.JSON], sample[contract.LATENT]
        if latent.ndim != 3 or latent.shape[0] % 2:
            raise ValueError(f"{contract.LATENT} is {list(latent.shape)}, not [2·C, H, W]")
        if self.augment is not None:
            return self._augmented(sample, meta, latent, rng)
        rows = real = latent.shape[1]
        if self.profile is not None:  # rows computed from real audio: the same share as the mel's frames
            mel = meta["mels"][self.profile]
            real = math.ceil(mel["real_frames"] * rows / mel["shape"][1])
        length = self.crop_rows or rows
        start = _crop_start(rows, length, real, rng, self.random_crop)
        window = torch.from_numpy(latent[:, start : start + length]).float().contiguous()
        caption = mbtg_caption(meta, sample["__key__"], caption_of(meta), self.mbtg, rng)
        return {"key": sample["__key__"], "latent": window, **_conditions(sample, caption)}

    def _augmented(self, sample: dict, meta: dict, latent: np.ndarray, rng: np.random.Generator) -> dict:
        stored = meta["mels"][self.profile]
        shape, rows = tuple(stored["shape"]), latent.shape[1]
        caption = mbtg_caption(meta, sample["__key__"], caption_of(meta), self.mbtg, rng)
        changed = self.augment(sample["__key__"], None, caption, shape, rng)
        real_frames = int(stored["real_frames"]) if changed is None else changed[1]
        r = shape[1] // rows  # mel frames per latent row
        length = self.crop_rows or rows
        start = _crop_start(rows, length, math.ceil(real_frames / r), rng, self.random_crop)
        out = {"key": sample["__key__"], "latent": None, "mel": None, "wave": None, "clap_input": None}
        if changed is None:
            out["latent"] = torch.from_numpy(latent[:, start : start + length]).float().contiguous()
        else:
            mel, _, caption, out["wave"] = changed
            out["clap_input"] = self.augment.clap_input(out["wave"])
            out["mel"] = torch.from_numpy(mel[:, start * r : (start + length) * r]).float().T.contiguous()[None]
        return {**out, **_conditions(sample, caption)}


def latent_example(
    crop_rows: int | None = None, *, random_crop: bool = True, profile: str | None = None, mbtg=None, augment=None
) -> LatentExample:
    """Latent examples (VAE posterior mean then log-variance, cropped along H = time rows). With
    `profile`, random crops stay within the rows that cover real audio (the json's real_frames); `mbtg`
    as for mel_example; `augment` an AudioAugment (see LatentExample)."""
    return LatentExample(crop_rows, random_crop, profile, mbtg, augment)


class TokenExample:
    """token_example(...): a token-shard sample (`t2a encode-tokens`) → {"key", "tokens" [T', F'] int64,
    "caption", embeddings, "event_count"}.

    With `mbtg` > 0 that share of the texts is Diffsound's mask-based text (§IV-C, MBTG: the clip's labels
    with 1 or 2 [MASK] tokens in each gap; pipelines.annotate.prompts.mbtg), drawn afresh each time the
    sample is read (the draw comes from the example's seeded generator), as Algorithm 3 builds its texts."""

    def __init__(self, mbtg: float = 0.0):
        self.mbtg = mbtg

    def wants(self, member: str) -> bool:
        return member in (contract.JSON, contract.TOKENS) or contract.member_kind(member) == "embedding"

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        from pipelines.annotate.prompts.mbtg import mbtg_text

        meta, tokens = sample[contract.JSON], sample[contract.TOKENS]
        if tokens.ndim != 2:
            raise ValueError(f"{contract.TOKENS} is {list(tokens.shape)}, not [T', F']")
        caption = caption_of(meta)
        if self.mbtg and rng.random() < self.mbtg:
            names = [label["name"] for label in meta.get("labels") or [] if label.get("name")]
            caption = mbtg_text(names, f"{sample['__key__']}/{int(rng.integers(2**31))}") or caption
        grid = torch.from_numpy(tokens.astype(np.int64))
        return {"key": sample["__key__"], "tokens": grid, **_conditions(sample, caption)}


def token_example(mbtg: float = 0.0) -> TokenExample:
    return TokenExample(mbtg)


class MixupTransform:
    """AudioLDM §3.3 eq. 8 within a batch: x = λ·x₁ + (1 − λ)·x₂, λ ~ Beta(α, α), one λ per mixed pair.

    With `probability` an example is mixed with a partner drawn from the same batch (the partner's
    original values). Every key in `keys` both hold with equal shapes gets the same λ; embeddings are
    L2-normalised again. The caption and key stay the first example's: AudioLDM trains its LDM on the
    CLAP audio embedding (mixed here), so the mixed audio needs no mixed text. An example whose audio
    AudioAugment changed (it carries "wave") is left as it is, and so is its partner.
    """

    def __init__(self, probability: float, alpha: float, keys: Sequence[str]):
        if not 0 <= probability <= 1 or not alpha > 0:
            raise ValueError(f"mixup: needs 0 ≤ probability ≤ 1 and alpha > 0, got {probability}, {alpha}")
        self.probability, self.alpha, self.keys = probability, alpha, tuple(keys)

    def __call__(self, examples: list[dict], rng: np.random.Generator) -> list[dict]:
        if len(examples) < 2:
            return examples
        out = []
        for i, example in enumerate(examples):
            if rng.random() >= self.probability:
                out.append(example)
                continue
            j = int(rng.integers(len(examples) - 1))
            out.append(self._mix(example, examples[j + (j >= i)], rng))
        return out

    def _mix(self, first: dict, second: dict, rng: np.random.Generator) -> dict:
        if first.get("wave") is not None or second.get("wave") is not None:
            return first  # audio changed by AudioAugment (its condition is recomputed from it): not mixed again
        shared = [
            k
            for k in self.keys
            if first.get(k) is not None and second.get(k) is not None and np.shape(first[k]) == np.shape(second[k])
        ]
        if not shared:
            return first
        mixed = dict(first)
        mixed[shared[0]], lam = mixup(first[shared[0]], second[shared[0]], rng, self.alpha)
        for key in shared[1:]:
            mixed[key] = (lam * np.asarray(first[key], np.float32) + (1 - lam) * np.asarray(second[key], np.float32)).astype(np.float32)
        for key in shared:
            if key in NORMALISED:
                mixed[key] = mixed[key] / np.maximum(np.linalg.norm(mixed[key], axis=-1, keepdims=True), 1e-12)
        return mixed


def mixup_transform(probability: float, alpha: float = 5.0,
                    keys: Sequence[str] = ("mel", "latent", "clap_audio", "clip_image_mean")) -> MixupTransform:
    return MixupTransform(probability, alpha, keys)


class CurriculumFilter:
    """Diffsound's curriculum (Diffsound §IV-C, Algorithm 3) by the slot's epoch: single-event clips
    first, then multi-event ones.

    Algorithm 3 splits the clips by their number of events (`event_count`, pipelines.core.labels)
    into the Single Event Set (SES) and the Multiple Event Set (MES), trains `for i = 1 to n` epochs
    on the SES, then `for i = 1 to 2·n` epochs on the MES: epochs < n keep event_count == 1, epochs
    n .. 3n−1 keep ≥ 2, and the SES is not revisited (the introduction's "gradually add the audios
    that include multiple events" reads as if it stayed in; the algorithm does not keep it). Algorithm
    3 ends after 3n epochs; training here is step-based and goes on, so later epochs keep every
    labelled clip (≥ 1). Clips with no event (no labels) are never kept: Algorithm 3 builds every
    training text from the labels (text = MBTG(l))."""

    def __init__(self, n: int):
        if n < 1:
            raise ValueError(f"curriculum: n must be ≥ 1, got {n}")
        self.n = n

    def __call__(self, sample: dict, epoch: int) -> bool:
        count = int(sample[contract.JSON].get("event_count", 0))
        if epoch < self.n:
            return count == 1
        if epoch < 3 * self.n:
            return count >= 2
        return count >= 1


class WithMember:
    """An example function that skips the samples without `member` (None: left out, like a filtered
    sample, not counted as an error). CLIPSonic (§2–§3) trains on videos: a clip without frames has no
    q_img to condition on, so clip-image conditioning keeps the clips whose shards carry their CLIP frame
    embeddings, and a corpus of audio-only and video clips trains on its video part."""

    def __init__(self, example, member: str):
        self.example, self.member = example, member

    def wants(self, member: str) -> bool:
        inner = getattr(self.example, "wants", None)
        return member == self.member or inner is None or inner(member)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict | None:
        found = sample.get(self.member)
        if found is None or not np.size(found):
            return None
        return self.example(sample, rng)

    def __getattr__(self, name: str):  # `recent`, `augment`, … of the wrapped example
        if name in ("example", "member"):
            raise AttributeError(name)
        return getattr(self.example, name)


def with_frames(example, conditioning: str):
    """`example` restricted to clips with CLIP frame embeddings when the conditioning reads them."""
    return WithMember(example, contract.embedding_member("clip_image")) if conditioning == "clip-image" else example


def curriculum_filter(n: int) -> CurriculumFilter:
    return CurriculumFilter(n)
