"""The captioning expert on a tiny random Whisper: candidate contract, determinism across loads
and batch layouts, per-key seeded sampling, load errors, and the Beam handler (resampling and a
real RunInference pipeline)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import soxr
import torch
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from pydantic import ValidationError
from tiny_captioner import noise_clip, tiny_captioner_folder
from transformers import BertConfig

from demo.captioner import MAX_TARGET_POSITIONS
from pipelines.annotate.prompts.experts import (
    Captioner,
    CaptionerHandler,
    CaptioningConfig,
    ExpertLoadError,
    _distinct,
    captioner_provenance,
    clip_seed,
    load_captioner,
)
from pipelines.core.config import ConfigError
from pipelines.core.features.mel import RESAMPLE_QUALITY


@pytest.fixture(scope="module", autouse=True)
def offline_one_thread():
    """Offline HF; one torch thread: OpenMP threads in Beam's worker thread slowed the pipeline
    test from 1 s to 30 s on a busy 2-core machine, and the tiny model gains nothing from two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tiny_captioner_folder(tmp_path_factory)


@pytest.fixture(scope="module")
def captioner(folder) -> Captioner:
    return load_captioner(CaptioningConfig(model=str(folder)), "cpu")


@pytest.fixture(scope="module")
def sampler(folder) -> Captioner:
    return load_captioner(CaptioningConfig(model=str(folder), do_sample=True, seed=7), "cpu")


CLIPS = [noise_clip(seed, seconds) for seed, seconds in ((0, 1.0), (1, 2.0), (2, 3.0))]
KEYS = ["clip_a", "clip_b", "clip_c"]


# --- config -------------------------------------------------------------------------------------


def test_config_resolves_local_folders_against_the_config_dir_and_keeps_ids(tmp_path):
    (tmp_path / "models" / "cap").mkdir(parents=True)
    context = {"base_dir": tmp_path}
    local = CaptioningConfig.model_validate({"model": "models/cap"}, context=context)
    assert local.model == str(tmp_path / "models" / "cap")
    assert CaptioningConfig.model_validate({"model": "./gone"}, context=context).model == str(tmp_path / "gone")
    assert CaptioningConfig.model_validate({"model": "org/captioner"}, context=context).model == "org/captioner"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"num_beams": 2}, "num_beams (2) must be at least candidates (3)"),
        ({"candidates": 0}, "greater than or equal to 1"),
        ({"batch": {"min": 4, "max": 2}}, "batch.max (2) must be at least batch.min (4)"),
        ({"beams": 3}, "unknown key 'beams' (did you mean 'num_beams'?)"),
        ({"model": " "}, "model is empty"),
    ],
)
def test_config_errors_say_what_to_fix(values, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        CaptioningConfig.model_validate({"model": "m", **values})


def test_sampling_needs_no_beams():
    assert CaptioningConfig(model="m", do_sample=True, num_beams=1, candidates=5).candidates == 5


# --- captions -----------------------------------------------------------------------------------


def test_candidates_are_distinct_non_empty_and_at_most_n(captioner):
    results = captioner.caption(CLIPS, KEYS)
    assert len(results) == len(CLIPS)
    for candidates in results:
        assert 1 <= len(candidates) <= 3
        assert len(set(candidates)) == len(candidates)
        assert all(text and text == " ".join(text.split()) for text in candidates)
    assert len({tuple(c) for c in results}) > 1, "captions do not depend on the audio"
    # The tiny model's beams all decode to different texts; Whisper's own generate() would return
    # three copies of the best beam (see Captioner._generate).
    assert [len(c) for c in results] == [3, 3, 3]
    assert captioner.caption([], []) == []


def test_deterministic_across_loads_and_batch_layouts(captioner, folder):
    together = captioner.caption(CLIPS, KEYS)
    again = load_captioner(CaptioningConfig(model=str(folder)), "cpu").caption(CLIPS, KEYS)
    assert again == together
    assert captioner.caption(CLIPS[2:], KEYS[2:]) == together[2:]
    assert captioner.caption(CLIPS[::-1], KEYS[::-1]) == together[::-1]


def test_models_without_a_fixed_window_caption_clip_by_clip(captioner, monkeypatch):
    together = captioner.caption(CLIPS, KEYS)
    monkeypatch.setattr(captioner, "window", None)
    calls = []
    generate = captioner._generate
    monkeypatch.setattr(
        captioner, "_generate", lambda clips, config: calls.append(len(clips)) or generate(clips, config)
    )
    assert captioner.caption(CLIPS, KEYS) == together
    assert calls == [1, 1, 1]


def test_clips_longer_than_the_window_are_captioned_from_the_first_window(captioner):
    long = noise_clip(3, 33.0)
    assert captioner.window == 30 * 16000
    first = long[: captioner.window]
    assert captioner.caption([long], ["x"]) == captioner.caption([first], ["x"])
    assert captioner.caption([long], ["x"]) != captioner.caption([long[-captioner.window :]], ["x"])


def test_sampling_is_seeded_per_clip_key(sampler, folder):
    together = sampler.caption(CLIPS, KEYS)
    assert sampler.caption(CLIPS, KEYS) == together
    assert sampler.caption(CLIPS[1:2], KEYS[1:2]) == together[1:2]  # batch neighbours do not matter
    assert sampler.caption(CLIPS[1:2], ["clip_z"]) != together[1:2]  # the key does
    reseeded = load_captioner(CaptioningConfig(model=str(folder), do_sample=True, seed=8), "cpu")
    assert reseeded.caption(CLIPS[1:2], KEYS[1:2]) != together[1:2]
    state = torch.random.get_rng_state()
    sampler.caption(CLIPS[:1], KEYS[:1])
    assert torch.equal(torch.random.get_rng_state(), state), "sampling leaked into the global RNG"
    assert all(1 <= len(c) <= 3 for c in together)


def test_clip_seed_is_stable_and_key_dependent():
    assert clip_seed(0, "a") == 5690829181965289459  # pinned: a change would reshuffle every corpus
    assert clip_seed(0, "a") != clip_seed(0, "b") != clip_seed(1, "b")
    assert 0 <= clip_seed(123, "clip") < 2**63


def test_decoder_prefix_is_forced_and_cut_from_the_captions(captioner, folder):
    config = CaptioningConfig(model=str(folder), decoder_prefix="a dog barks")
    prefixed = load_captioner(config, "cpu")
    prefix = captioner.processor.tokenizer("a dog barks", add_special_tokens=False).input_ids
    assert prefixed.start == captioner.start + prefix
    results = prefixed.caption(CLIPS, KEYS)
    assert results != captioner.caption(CLIPS, KEYS)  # the prefix conditions the decoder
    assert all(text and not text.startswith("a dog barks") for c in results for text in c)


def test_language_adds_whisper_language_and_task_tokens(captioner, folder):
    tokens = captioner.processor.tokenizer.convert_tokens_to_ids
    sot, en, transcribe, no_timestamps = tokens(
        ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    )
    assert captioner.start == [sot, no_timestamps]  # English-only checkpoint, no language given
    english = load_captioner(CaptioningConfig(model=str(folder), language="en"), "cpu")
    assert english.start == [sot, en, transcribe, no_timestamps]
    with pytest.raises(ExpertLoadError, match="language 'klingon': Unsupported language"):
        load_captioner(CaptioningConfig(model=str(folder), language="klingon"), "cpu")


def test_distinct_drops_empty_and_repeated_candidates_in_order():
    assert _distinct([" b  a", "", "b a", "   ", "c", "b a "]) == ["b a", "c"]


def test_provenance_matches_without_loading_and_tracks_the_files(captioner, folder, tmp_path):
    config = CaptioningConfig(model=str(folder))
    assert captioner.provenance == captioner_provenance(config)
    assert set(captioner.provenance) == {"model", "sha256", "transformers", "class"}
    assert captioner.provenance["class"] == "WhisperForConditionalGeneration"
    copy = shutil.copytree(folder, tmp_path / "copy")
    assert captioner_provenance(CaptioningConfig(model=str(copy)))["sha256"] == captioner.provenance["sha256"]
    (copy / "generation_config.json").write_text((copy / "generation_config.json").read_text() + "\n")
    assert captioner_provenance(CaptioningConfig(model=str(copy)))["sha256"] != captioner.provenance["sha256"]


# --- load errors --------------------------------------------------------------------------------


def _without_processor(folder: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(folder / name, target / name)
    return target


@pytest.mark.parametrize(
    "make, device, message",
    [
        (lambda folder, tmp: tmp / "missing", "cpu", "captioning model folder not found"),
        (lambda folder, tmp: tmp, "cpu", "holds no loadable model config"),
        (
            lambda folder, tmp: BertConfig(hidden_size=8).save_pretrained(tmp) or tmp,
            "cpu",
            "holds a 'bert' model, not an audio-to-text",
        ),
        (
            lambda folder, tmp: _without_processor(folder, tmp / "bare"),
            "cpu",
            "cannot load the captioning model|no audio processor",
        ),
        (
            lambda folder, tmp: "t2a-tests/no-such-captioner",
            "cpu",
            "neither a folder nor in the local Hugging Face cache",
        ),
        (lambda folder, tmp: folder, "meta", "unsupported device 'meta'"),
        (lambda folder, tmp: folder, "cuda:x", "unknown device 'cuda:x'"),
    ],
)
def test_load_errors_are_clear(folder, tmp_path, make, device, message):
    with pytest.raises(ExpertLoadError, match=message) as error:
        load_captioner(CaptioningConfig(model=str(make(folder, tmp_path))), device)
    assert isinstance(error.value, ConfigError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_is_a_clear_error(folder):
    with pytest.raises(ExpertLoadError, match="torch sees no CUDA GPU; use device 'cpu'"):
        load_captioner(CaptioningConfig(model=str(folder)), "cuda")


def test_too_many_new_tokens_for_the_decoder(folder):
    with pytest.raises(ExpertLoadError, match=f"exceed the decoder's {MAX_TARGET_POSITIONS} positions"):
        load_captioner(CaptioningConfig(model=str(folder), max_new_tokens=MAX_TARGET_POSITIONS), "cpu")


# --- Beam handler -------------------------------------------------------------------------------


class _Recorder:
    sample_rate = 16000

    def __init__(self):
        self.seen: list[tuple[list[np.ndarray], list[str]]] = []

    def caption(self, waveforms, keys):
        self.seen.append((list(waveforms), list(keys)))
        return [[key] for key in keys]


def test_handler_resamples_to_the_captioner_rate_and_keeps_order():
    config = CaptioningConfig(model="m", batch={"min": 2, "max": 4})
    handler = CaptionerHandler(config, "cpu")
    assert handler.batch_elements_kwargs() == {"min_batch_size": 2, "max_batch_size": 4}
    clips = [("b", noise_clip(1, 0.5, 48000)), ("a", noise_clip(2, 0.25, 48000))]
    recorder = _Recorder()
    assert handler.run_inference(clips, recorder) == [["b"], ["a"]]
    waveforms, keys = recorder.seen[0]
    assert keys == ["b", "a"]
    for (_, clip), wave in zip(clips, waveforms):
        assert wave.dtype == np.float32 and wave.shape == (len(clip) // 3,)
        np.testing.assert_array_equal(wave, soxr.resample(clip, 48000, 16000, quality=RESAMPLE_QUALITY))
    assert handler.get_num_bytes(clips) == sum(clip.nbytes for _, clip in clips)
    same_rate = CaptionerHandler(config, "cpu", input_rate=16000)
    same_rate.run_inference(clips[:1], recorder)
    np.testing.assert_array_equal(recorder.seen[1][0][0], clips[0][1])


def test_handler_in_a_run_inference_pipeline(folder, captioner):
    clips = {key: noise_clip(seed, 1.0, 48000) for seed, key in enumerate(KEYS)}
    at_16k = [soxr.resample(clips[key], 48000, 16000, quality=RESAMPLE_QUALITY) for key in KEYS]
    expected = list(zip(KEYS, captioner.caption(at_16k, KEYS)))
    unresampled = captioner.caption([clips[key] for key in KEYS], KEYS)
    assert [c for _, c in expected] != unresampled, "resampling would go unnoticed"
    handler = KeyedModelHandler(CaptionerHandler(CaptioningConfig(model=str(folder)), "cpu"))
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as pipeline:
        captions = (
            pipeline
            | "Clips" >> beam.Create([(key, (key, clips[key])) for key in KEYS])
            | "Caption" >> RunInference(handler)
        )
        assert_that(captions, equal_to(expected))
