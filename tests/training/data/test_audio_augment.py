"""Make-An-Audio §3.2.2 dynamic reprogramming from D (the corpus's single-event clips) and AudioLDM §3.3 eq. 8
waveform mixup in the LDM: the clip index, determinism and resume, the recomputed CLAP condition, and the
VAE encoding of exactly the changed samples when latents are pre-encoded."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_training import build_tiny_clap, tiny_vae_config
from train_shards import write_split

from pipelines.core.features import MelExtractor, get_profile
from pipelines.shard import contract
from training.config import DataConfig, MixupConfig, ReprogramConfig
from training.data import clips as clips_module
from training.data.clips import clip_index
from training.data.examples import AudioAugment, latent_example, mel_example
from training.data.loader import StreamLoader, collate, list_shards
from training.data.stream import Tally, decode, read_samples

os.environ.setdefault("HF_HUB_OFFLINE", "1")
LATENT = (8, 5, 16)  # a tiny VAE with r = 4 and C = 4 over the 20-frame, 64-bin audioldm mels of write_split


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The same split twice: with audio and mels (the corpus) and as latent shards (no audio)."""
    root = tmp_path_factory.mktemp("augment")
    audio = write_split(root / "corpus", shards=2, per_shard=6)
    latents = write_split(root / "latents", shards=2, per_shard=6, latent=LATENT)
    return audio, latents, root / "run"


@pytest.fixture(scope="module")
def clips(corpus):
    audio, _, run = corpus
    return clip_index(DataConfig(shards=str(audio)), "train", run)


def samples(root, shards=slice(None)):
    raws = read_samples(list_shards(str(root), "train")[shards], Tally(0))
    return [decode(raw) for raw in raws]


def test_d_holds_only_single_event_clips_and_is_built_once(corpus, clips, monkeypatch):
    audio, _, run = corpus
    metas = {s["__key__"]: s[contract.JSON] for s in samples(audio)}
    assert len(clips) == len(metas) == 12
    single = {key for key, meta in metas.items() if meta["event_count"] == 1 and len(meta["labels"]) == 1}
    assert 0 < len(single) < len(metas)
    assert {clips.key(int(row)) for row in clips.events} == single
    for row in clips.events:
        assert clips.event_label(int(row)) == metas[clips.key(int(row))]["labels"][0]["name"]
    some = clips.find(next(iter(metas)))
    assert clips.audio(some) == next(s for s in samples(audio) if s["__key__"] == clips.key(some))[contract.AUDIO]
    cached = list((run / "augment").glob("clips-train-*.npz"))
    assert len(cached) == 1

    def no_scan(*args, **kwargs):
        raise AssertionError("the index was built again")

    monkeypatch.setattr(clips_module, "build_clip_index", no_scan)  # a second run (or a resume) reads the cache
    again = clip_index(DataConfig(shards=str(audio)), "train", run)
    assert np.array_equal(again.keys, clips.keys) and np.array_equal(again.events, clips.events)


def reprogramming(clips, probability=1.0, counts=(1, 2)):
    return mel_example(
        "audioldm", 8, reprogram=ReprogramConfig(probability=probability, counts=list(counts)), clips=clips
    )


def test_reprogramming_composes_events_of_d_with_the_template_caption(corpus, clips):
    audio, _, _ = corpus
    sample = samples(audio)[0]
    out = reprogramming(clips, counts=[2])(sample, np.random.default_rng(0))
    plain = mel_example("audioldm", 8)(sample, np.random.default_rng(0))
    labels = {clips.event_label(int(row)).lower() for row in clips.events}
    assert out["caption"] != plain["caption"] and sum(label in out["caption"] for label in labels) >= 1
    extractor = MelExtractor(get_profile("audioldm"))
    own = extractor.resample(*sf.read(io.BytesIO(sample[contract.AUDIO]), dtype="float32"))
    assert len(out["wave"]) > len(own)  # two events joined to the clip
    mel, _ = extractor.mel(out["wave"])
    got = out["mel"][0].numpy()  # a window of the composed clip's mel
    assert any(np.allclose(got, mel[:, s : s + 8].T, atol=1e-5) for s in range(mel.shape[1] - 7))


def test_the_same_seed_gives_the_same_composed_samples_and_resumes_exactly(corpus, clips):
    audio, _, run = corpus
    shards = list_shards(str(audio), "train")

    def loader(index):
        return StreamLoader(shards, reprogramming(index, 0.5), batch_size=3, seed=4, shuffle_buffer=3)

    first = iter(loader(clips))
    seen, states, wrapper = [], [], loader(clips)
    stream = iter(wrapper)
    for _ in range(6):
        seen.append(next(stream))
        states.append(json.loads(json.dumps(wrapper.state_dict())))
    again = [next(first) for _ in range(6)]
    assert [b["caption"] for b in again] == [b["caption"] for b in seen]
    assert any(wave is not None for b in seen for wave in b["wave"]) and any(
        wave is None for b in seen for wave in b["wave"]
    )
    resumed = loader(clip_index(DataConfig(shards=str(audio)), "train", run))  # the cached index, as a resumed run
    resumed.load_state_dict(states[2])
    for got, want in zip([b for _, b in zip(range(3), resumed)], seen[3:6]):
        assert got["caption"] == want["caption"] and got["key"] == want["key"]
        assert torch.equal(got["mel"], want["mel"])


def test_the_condition_of_a_reprogrammed_sample_is_the_clap_embedding_of_the_composed_audio(
    corpus, clips, tmp_path_factory
):
    from pipelines.annotate.encoders import audio_windows, pool_windows
    from pipelines.annotate.encoders.clap_transformers import load
    from pipelines.annotate.encoders.config import ClapConfig
    from training.tasks.ldm import wave_conditioning

    from training.models.conditioning import ClapAudioFeatures

    audio, _, _ = corpus
    folder = build_tiny_clap(tmp_path_factory.getbasetemp())
    example = mel_example(
        "audioldm",
        8,
        reprogram=ReprogramConfig(probability=0.5, counts=[1, 2]),
        clips=clips,
        clap_features=ClapAudioFeatures(folder),  # the CLAP input features computed in the loader
    )
    batch = collate([example(sample, np.random.default_rng(i)) for i, sample in enumerate(samples(audio, slice(0, 1)))])
    changed = [i for i, wave in enumerate(batch["wave"]) if wave is not None]
    assert changed and len(changed) < len(batch["wave"])
    assert [i for i, x in enumerate(batch["clap_input"]) if x is not None] == changed
    rate = get_profile("audioldm").sample_rate
    stored = torch.nn.functional.normalize(torch.randn(len(changed) + 6, 32), dim=-1)[: len(batch["wave"])]
    batch["clap_audio"] = stored  # as annotate would store them with this 32-wide CLAP
    recompute = wave_conditioning("clap-audio", str(folder), rate)
    out = recompute(batch)
    step_only = recompute({**batch, "clap_input": [None] * len(batch["wave"])})  # no loader features: all in the step
    import transformers

    seconds = transformers.ClapFeatureExtractor.from_pretrained(folder).nb_max_samples / 48000
    clap = load(ClapConfig(model=str(folder), window_seconds=seconds), "cpu")  # annotate's CLAP, as it embeds a clip
    for i in range(len(batch["wave"])):
        if i in changed:
            wave = np.asarray(batch["wave"][i], np.float32)
            direct = pool_windows(clap.embed_audio(audio_windows(wave, rate, 48000, clap.window_samples)))
            np.testing.assert_allclose(out["clap_audio"][i].numpy(), direct, atol=1e-5)
            np.testing.assert_allclose(step_only["clap_audio"][i].numpy(), direct, atol=1e-5)
            assert not torch.allclose(out["clap_audio"][i], batch["clap_audio"][i])
        else:
            assert torch.equal(out["clap_audio"][i], batch["clap_audio"][i])  # the stored embedding
    assert wave_conditioning("clap-text", str(folder), rate) is None  # text conditioning reads the composed caption


@pytest.fixture(scope="module")
def vae():
    from training.models.vae import build_vae

    torch.manual_seed(0)
    return build_vae(tiny_vae_config(levels=3)).eval()  # r = 4, C = 4: posteriors [8, 5, 16] for [20, 64] mels


def test_pre_encoded_latents_encode_exactly_the_reprogrammed_samples(corpus, clips, vae):
    from training.models.vae import encode_moments
    from training.tasks.ldm import _moments

    _, latents, _ = corpus
    augment = AudioAugment.of("audioldm", ReprogramConfig(probability=0.5, counts=[1]), None, clips)
    example = latent_example(None, random_crop=False, profile="audioldm", augment=augment)
    read = samples(latents)[:6]
    batch = collate([example(sample, np.random.default_rng(i + 1)) for i, sample in enumerate(read)])
    changed = [i for i, latent in enumerate(batch["latent"]) if latent is None]
    assert changed and len(changed) < len(read)
    assert all((batch["wave"][i] is None) == (i not in changed) for i in range(len(read)))
    moments = _moments(vae, batch, "cpu")
    for i, sample in enumerate(read):
        if i in changed:
            expected = encode_moments(vae, batch["mel"][i][None])[0]
            torch.testing.assert_close(moments[i], expected)
        else:  # the stored posterior, untouched
            assert torch.equal(moments[i], torch.from_numpy(sample[contract.LATENT].astype(np.float32)))


def test_waveform_mixup_latent_is_the_vae_encoding_of_the_mixed_waveforms_mel(corpus, clips, vae):
    from training.models.vae import encode_moments
    from training.tasks.ldm import _moments

    _, latents, _ = corpus
    augment = AudioAugment.of("audioldm", None, MixupConfig(probability=1.0, alpha=5.0, domain="waveform"), clips)
    example = latent_example(None, random_crop=False, profile="audioldm", augment=augment)
    sample = samples(latents)[0]
    batch = collate([example(sample, np.random.default_rng(3))])
    replay = np.random.default_rng(3)
    replay.random()  # the mixup draw
    own = clips.find(sample["__key__"])
    partner = int(replay.integers(len(clips) - 1))
    partner += partner >= own
    lam = replay.beta(5.0, 5.0)
    extractor = MelExtractor(get_profile("audioldm"))

    def wave(row):
        return extractor.resample(*sf.read(io.BytesIO(clips.audio(row)), dtype="float32"))

    a, b = wave(own), wave(partner)
    length = max(len(a), len(b))
    mixed = (lam * np.pad(a, (0, length - len(a))) + (1 - lam) * np.pad(b, (0, length - len(b)))).astype(np.float32)
    np.testing.assert_allclose(batch["wave"][0], mixed, atol=1e-6)
    mel, _ = extractor.mel(mixed)
    frames = sample[contract.JSON]["mels"]["audioldm"]["shape"][1]
    mel = np.concatenate([mel, np.repeat(extractor.silence[:, None], max(frames - mel.shape[1], 0), axis=1)], axis=1)[
        :, :frames
    ]
    expected = encode_moments(vae, torch.from_numpy(mel.T.copy()).float()[None, None])[0]
    torch.testing.assert_close(_moments(vae, batch, "cpu")[0], expected, atol=1e-5, rtol=1e-4)
    assert batch["caption"][0] == mel_example("audioldm")(samples(corpus[0])[0], np.random.default_rng(0))["caption"]


def test_in_batch_mixup_leaves_reprogrammed_samples_alone(corpus, clips):
    from training.data.examples import mixup_transform

    _, latents, _ = corpus
    augment = AudioAugment.of("audioldm", ReprogramConfig(probability=0.5, counts=[1]), None, clips)
    example = latent_example(None, random_crop=False, profile="audioldm", augment=augment)
    read = samples(latents)[:6]
    examples = [example(sample, np.random.default_rng(i + 1)) for i, sample in enumerate(read)]
    mixed = mixup_transform(1.0)(examples, np.random.default_rng(0))
    for before, after in zip(examples, mixed):
        if before["wave"] is not None:
            assert after is before
        else:
            assert after["mel"] is None and after["latent"].shape == before["latent"].shape
    assert any(after is not before for before, after in zip(examples, mixed))


def test_a_pre_encoded_run_trains_with_reprogramming_and_text_conditioning(tmp_path, monkeypatch):
    """One `train ldm` step end to end: D indexed into the run folder, the composed captions reach the text
    conditioner, the changed samples' mels go through the VAE in the step (Make-An-Audio §3.2.2)."""
    from tiny_training import tiny_run_config
    from train_corpus import build_train_corpus

    from demo.models import build_clap
    from training.config import load_config
    from training.loop import read_metrics
    from training.models import conditioning
    from training.tasks import encode_latents
    from training.tasks import ldm as train_ldm
    from training.tasks import vae as train_vae

    shards = build_train_corpus(tmp_path / "shards", splits={"train": (2, 4), "valid": (1, 2)}, clip_frames=1)
    one = {"steps": 1, "checkpoint_every": 1, "log_every": 1, "ema_decay": 0.0}
    path = tiny_run_config(
        tmp_path,
        shards,
        build_clap(tmp_path / "clap"),
        **{
            "ldm.conditioning": "clap-text",
            "ldm.train": one,
            "vae.train": one,
            "sample.prompts": [],
            "data.augment": {"reprogram": {"probability": 1.0, "counts": [1]}},
        },
    )
    config = load_config(path)
    train_vae.train(config)
    encode_latents.encode(config)
    captions: list[str] = []
    original = conditioning.ClapText.from_batch

    def spy(self, batch, generator=None):
        captions.extend(batch["caption"])
        return original(self, batch, generator)

    monkeypatch.setattr(conditioning.ClapText, "from_batch", spy)
    train_ldm.train(config)
    assert [m["step"] for m in read_metrics(config.ldm_dir) if "loss" in m] == [1]
    assert list((config.run / "augment").glob("clips-train-*.npz"))
    assert captions and all(" of " in caption for caption in captions[:4])  # App. F templates: "... of <event>"
