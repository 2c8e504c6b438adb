"""demo.models: the tiny models are reproducible from their seed and keep the real
models' input contract (48 kHz / 64 mels / 10 s; 224x224 images)."""

from __future__ import annotations

import json

import transformers

from demo.models import build_clap, build_clip, clip_tokenizer, roberta_tokenizer
from pipelines.core.io import content_sha256


def test_same_seed_same_files_other_seed_other_weights(demo_models, tmp_path):
    assert content_sha256(build_clap(tmp_path / "clap", seed=0)) == content_sha256(demo_models["clap"])
    assert content_sha256(build_clip(tmp_path / "clip", seed=0)) == content_sha256(demo_models["clip"])
    other = build_clap(tmp_path / "clap1", seed=1)
    assert (other / "model.safetensors").read_bytes() != (demo_models["clap"] / "model.safetensors").read_bytes()
    assert (other / "tokenizer.json").read_bytes() == (demo_models["clap"] / "tokenizer.json").read_bytes()


def test_inputs_are_those_of_the_real_models(demo_models):
    extractor = json.loads((demo_models["clap"] / "processor_config.json").read_text())["feature_extractor"]
    assert (extractor["sampling_rate"], extractor["feature_size"], extractor["max_length_s"]) == (48000, 64, 10)
    vision = transformers.CLIPConfig.from_pretrained(demo_models["clip"]).vision_config
    assert (vision.image_size, vision.patch_size) == (224, 32)


def test_roberta_tokenizer_has_roberta_base_special_ids_and_no_unknowns():
    tokenizer = roberta_tokenizer()
    assert [tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id] == [
        0,
        1,
        2,
        3,
    ]
    assert tokenizer.unk_token_id not in tokenizer("Ünïcode 😀 siren")["input_ids"]  # byte-level: every text encodes


def test_clip_tokenizer_marks_word_ends_and_has_no_unknowns():
    tokenizer = clip_tokenizer()
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.model_max_length) == (0, 1, 77)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("A dog barks, é!")["input_ids"])
    assert tokens[0] == "<|startoftext|>" and tokens[-1] == "<|endoftext|>"
    assert tokens.count("<|endoftext|>") == 1  # <unk> is <|endoftext|> in CLIP: never produced
    assert tokens[1] == "a</w>" and sum(t.endswith("</w>") for t in tokens) == 6  # a, dog, barks, ",", é, "!"
