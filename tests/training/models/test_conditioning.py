"""The conditioning modes against the encoders they wrap: what each gives the UNet at training and at
sampling, its null condition, and the errors a user can cause."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import transformers
from tiny_training import build_tiny_clap, build_tiny_clip, tiny_ldm_config
from torch import Tensor

from pipelines.core.config import ConfigError
from pipelines.core.registry import UnknownName
from training.models.conditioning import CONDITIONERS, MAX_TOKENS, build_conditioner

PROMPTS = ["a dog barks", "rain falls on a roof while thunder rumbles"]


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict:
    base = tmp_path_factory.getbasetemp()
    return {"clap": build_tiny_clap(base), "clip": build_tiny_clip(base)}


@pytest.fixture(scope="module")
def clap(encoders):
    model = transformers.ClapModel.from_pretrained(encoders["clap"], local_files_only=True).eval()
    return model, transformers.AutoTokenizer.from_pretrained(encoders["clap"], local_files_only=True)


def _build(mode: str, encoders: dict):
    return build_conditioner(tiny_ldm_config(mode, **encoders))


def test_registry_names_the_three_modes():
    assert CONDITIONERS.names() == ["clap-audio", "clap-text", "clip-image"]
    with pytest.raises(
        UnknownName, match="unknown conditioning mode 'clap'; valid names: clap-audio, clap-text, clip-image"
    ):
        build_conditioner(tiny_ldm_config("clap"))


def test_clap_audio_trains_on_audio_embeddings_and_samples_with_clap_text(encoders, clap):
    conditioner = _build("clap-audio", encoders)
    assert (conditioner.kind, conditioner.dim, conditioner.tokens) == ("class", 32, None)
    audio = torch.randn(3, 32) * 4
    torch.testing.assert_close(conditioner.from_batch({"clap_audio": audio.numpy()}), F.normalize(audio, dim=-1))
    model, tokenizer = clap
    with torch.no_grad():
        expected = model.get_text_features(**tokenizer(PROMPTS, padding=True, return_tensors="pt")).pooler_output
    torch.testing.assert_close(conditioner.from_prompts(PROMPTS), expected)  # AudioLDM §3.2: E^y for E^x
    null = conditioner.null(2)
    assert null.shape == (2, 32) and torch.equal(null[0], null[1])
    torch.testing.assert_close(null[:1], conditioner.from_prompts([""]))
    assert conditioner.unet_kwargs(null) == {"encoder_hidden_states": None, "class_labels": null}
    with pytest.raises(ValueError, match="width 16 but ldm.encoders.clap projects to 32"):
        conditioner.from_batch({"clap_audio": torch.randn(2, 16)})
    with pytest.raises(ValueError, match="has no 'clap_audio'"):
        conditioner.from_batch({"caption": PROMPTS})


def test_clap_text_gives_padded_token_states_with_their_mask(encoders, clap):
    conditioner = _build("clap-text", encoders)
    assert (conditioner.kind, conditioner.dim, conditioner.tokens) == ("cross", 32, MAX_TOKENS)
    states = conditioner.from_batch({"caption": PROMPTS})
    assert states.shape == (2, MAX_TOKENS, 32)
    model, tokenizer = clap
    tokens = tokenizer(PROMPTS[:1], return_tensors="pt")
    with torch.no_grad():
        expected = model.text_model(**tokens).last_hidden_state[0]
    length = tokens["input_ids"].shape[1]
    torch.testing.assert_close(states[0, :length], expected, atol=1e-5, rtol=1e-4)
    assert (states[0, length:] == 0).all()
    mask = conditioner.unet_kwargs(states)["encoder_attention_mask"]
    assert mask[0].tolist() == [1.0] * length + [0.0] * (MAX_TOKENS - length)
    null = conditioner.null(3)
    torch.testing.assert_close(null[:1], conditioner.from_prompts([""]))
    assert conditioner.unet_kwargs(null)["encoder_attention_mask"].sum(dim=1).tolist() == [2.0] * 3  # <s></s>


def test_clip_image_trains_on_frames_and_samples_with_clip_text(encoders):
    conditioner = _build("clip-image", encoders)
    assert (conditioner.kind, conditioner.dim, conditioner.tokens) == ("cross", 32, 1)
    frames = torch.randn(2, 4, 32)
    pooled = F.normalize(frames.mean(dim=1), dim=-1)[:, None]
    torch.testing.assert_close(conditioner.from_batch({"clip_image": frames}), pooled)  # Make-An-Audio §4.3
    torch.testing.assert_close(
        conditioner.from_batch({"clip_image_mean": frames.mean(dim=1), "clip_image": frames[:, :1]}), pooled
    )
    model = transformers.CLIPModel.from_pretrained(encoders["clip"], local_files_only=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(encoders["clip"], local_files_only=True)
    with torch.no_grad():
        expected = model.get_text_features(**tokenizer(PROMPTS, padding=True, return_tensors="pt")).pooler_output
    torch.testing.assert_close(
        conditioner.from_prompts(PROMPTS), F.normalize(expected, dim=-1)[:, None]
    )  # CLIPSonic-ZS
    assert torch.equal(conditioner.null(2), torch.zeros(2, 1, 32))
    assert set(conditioner.unet_kwargs(conditioner.null(2))) == {"encoder_hidden_states"}


def test_clip_image_random_frames_draw_one_frame_per_clip_per_step(encoders):
    """CLIPSonic §2: q_img of one randomly selected frame; clips with differing frame counts (a list)."""
    conditioner = build_conditioner(tiny_ldm_config("clip-image", **encoders, clip_frames="random"))
    frames = [torch.randn(3, 32), torch.randn(1, 32), torch.randn(4, 32)]
    batch = {"clip_image": frames, "clip_image_mean": torch.zeros(3, 32)}  # the mean is not read

    def draw(seed: int) -> Tensor:
        return conditioner.from_batch(batch, torch.Generator().manual_seed(seed))

    first = draw(0)
    assert first.shape == (3, 1, 32)
    torch.testing.assert_close(first, draw(0))  # determinism by seed
    for i, clip in enumerate(frames):  # each row is one of its clip's frames, normalised
        assert min(float((first[i, 0] - F.normalize(f, dim=-1)).abs().max()) for f in clip) < 1e-6
    torch.testing.assert_close(first[1, 0], F.normalize(frames[1][0], dim=-1))
    picks = {int(torch.argmax(draw(seed)[0, 0] @ F.normalize(frames[0], dim=-1).T)) for seed in range(20)}
    assert len(picks) == 3  # every frame of the 3-frame clip is drawn over 20 steps
    with pytest.raises(ValueError, match="needs a generator"):
        conditioner.from_batch(batch)
    with pytest.raises(ConfigError, match="ldm.clip_frames applies to clip-image conditioning"):
        build_conditioner(tiny_ldm_config("clap-audio", **encoders, clip_frames="random"))


def test_encoders_are_frozen_and_in_eval_mode(encoders):
    for mode in CONDITIONERS.names():
        conditioner = _build(mode, encoders)
        assert not conditioner.encoder.training
        assert not any(p.requires_grad for p in conditioner.encoder.parameters())
        assert conditioner.to("cpu") is conditioner


@pytest.mark.parametrize(
    "mode, key",
    [("clap-audio", "ldm.encoders.clap"), ("clap-text", "ldm.encoders.clap"), ("clip-image", "ldm.encoders.clip")],
)
def test_a_missing_encoder_is_a_config_error_naming_its_key(mode, key, tmp_path):
    with pytest.raises(ConfigError, match=f"{key} is not set: conditioning '{mode}' needs"):
        build_conditioner(tiny_ldm_config(mode))
    with pytest.raises(ConfigError, match=f"{key}: no model at {tmp_path}"):
        build_conditioner(tiny_ldm_config(mode, clap=tmp_path, clip=tmp_path))
