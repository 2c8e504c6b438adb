"""A tiny, randomly initialised Whisper captioner saved as a local folder, for the demo and tests.

It has the layout of a real audio-captioning checkpoint (model + WhisperProcessor + generation
config), so `pipelines.annotate.prompts.experts.load_captioner` loads it exactly as it would load a
fine-tuned Whisper: standard 80-mel / 16 kHz / 30 s feature extractor, a byte-level BPE with
Whisper's special tokens, an English-only generation config (no language detection). Its captions
are random words: the vocabulary is trained on the demo sound classes' caption phrases and the
generation config suppresses every token that is not a letter, a space or end-of-text.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)

from demo.sounds import SOUNDS

EOT = "<|endoftext|>"
# Whisper's special tokens in their checkpoint order; <|en|> right after <|startoftranscript|>
# keeps the tokenizer's `sot + 1 + language index` arithmetic right for English.
SPECIALS = (
    "<|startoftranscript|>",
    "<|en|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
)
GLUE = "a an the with and while in of on at by as then is are from near far loud soft distant background"
VOCAB_SIZE = 400  # byte alphabet (256) + merges; the specials come on top
MAX_TARGET_POSITIONS = 64  # start tokens + the default 30 new tokens, with room for a prefix
# Whisper initialises with std 0.02; a random decoder that small ignores the audio and gives every
# clip the same caption. At 1.0 the captions depend on the input, which the tests rely on.
INIT_STD = 1.0


def build_captioner(folder: Path, seed: int = 0) -> Path:
    """Write the tiny captioner into `folder` (created) and return it; same seed → same files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in (EOT, *SPECIALS)}
    suppress = _suppressed(tokenizer, ids)
    begin_suppress = [tokenizer.convert_tokens_to_ids("Ġ"), ids[EOT]]  # no empty or blank caption
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(_model_config(len(tokenizer), ids)).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=ids[EOT],
        eos_token_id=ids[EOT],
        pad_token_id=ids[EOT],
        no_timestamps_token_id=ids["<|notimestamps|>"],
        is_multilingual=False,  # English-only: Whisper's generate does not detect the language
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
    )
    model.save_pretrained(folder)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _caption_words() -> list[str]:
    lines = [phrase for sound in SOUNDS.values() for phrase in sound.phrases]
    return lines + [GLUE] + [f"{a} {b}" for a, b in zip(lines, reversed(lines))]


def _tokenizer() -> WhisperTokenizer:
    """Byte-level BPE trained on caption words (deterministic), wrapped with Whisper's specials."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(_caption_words(), trainer)
    trained = json.loads(bpe.to_str())["model"]
    merges = [tuple(pair.split(" ")) if isinstance(pair, str) else tuple(pair) for pair in trained["merges"]]
    return WhisperTokenizer(vocab=trained["vocab"], merges=merges, additional_special_tokens=list(SPECIALS))


def _suppressed(tokenizer: WhisperTokenizer, ids: dict[str, int]) -> list[int]:
    """Every special token but end-of-text, and every token that is not letters or a space."""
    vocab = tokenizer.get_vocab()
    letters = {token: token.replace("Ġ", "") for token in vocab}
    plain = [vocab[token] for token, word in letters.items() if word.isascii() and word.isalpha()]
    plain += [vocab["Ġ"], ids[EOT]]
    return sorted(set(vocab.values()) - set(plain))


def _model_config(vocab_size: int, ids: dict[str, int]) -> WhisperConfig:
    return WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=80,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,  # 30 s of 10 ms mel frames, halved by the encoder's stride-2 conv
        max_target_positions=MAX_TARGET_POSITIONS,
        init_std=INIT_STD,
        decoder_start_token_id=ids["<|startoftranscript|>"],
        pad_token_id=ids[EOT],
        bos_token_id=ids[EOT],
        eos_token_id=ids[EOT],
    )
