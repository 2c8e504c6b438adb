"""Tiny, randomly initialised CLAP and CLIP models for the demo and the tests, built offline in
about a second and saved in the layout of the real ones (so the real loaders read them).

The architectures are the real ones with small widths and depths; the audio front end keeps
CLAP's standard 48 kHz, 64-mel, 10-s feature extractor and the vision side CLIP's 224x224
input (with 32-pixel patches). Tokenizers are byte-level BPE trained on the AudioSet ontology's
names and descriptions plus common caption words. The same seed gives the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import tokenizers
import torch
import transformers
from tokenizers.pre_tokenizers import ByteLevel

from training.models.clap import VOCAB, roberta_tokenizer, save_tokenizer, tiny_clap_config, tokenizer_corpus

BYTES = sorted(ByteLevel.alphabet())  # byte-level BPE's 256 symbols
# While training CLIP's BPE, a word's last byte symbol is a private-use character of its own.
_END = {byte: chr(0xE000 + i) for i, byte in enumerate(BYTES)}
_BYTE = {end: byte for byte, end in _END.items()}


def clip_tokenizer() -> transformers.CLIPTokenizer:
    """CLIP's BPE: byte-level symbols, "</w>" on the last symbol of each word.

    The trainer's own `end_of_word_suffix` is not used: it numbers the suffixed symbols in
    hash-map order, ties between equally frequent pairs are broken by those numbers, and the
    merges changed from process to process. Here each word's last symbol is written as a
    private-use character of its own, part of the (sorted) initial alphabet, and turned back
    into "<symbol></w>" after training: the same BPE, with reproducible merges.
    """
    base = transformers.CLIPTokenizer().backend_tokenizer  # CLIP's normaliser and pre-tokenizer
    words = [
        " ".join(
            word[:-1] + _END[word[-1]]
            for word, _ in base.pre_tokenizer.pre_tokenize_str(base.normalizer.normalize_str(text))
        )
        for text in tokenizer_corpus()
    ]
    specials = ["<|startoftext|>", "<|endoftext|>"]
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    alphabet = [*BYTES, *_END.values()]  # every byte also as a word end: no text maps to <unk>
    bpe.train_from_iterator(
        words,
        tokenizers.trainers.BpeTrainer(
            vocab_size=VOCAB, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
        ),
    )
    vocab = json.loads(bpe.to_str())["model"]["vocab"]
    merges = [tuple(_word_end(part) for part in pair) for pair in json.loads(bpe.to_str())["model"]["merges"]]
    tokens = specials + alphabet + sorted(set(vocab) - set(specials) - set(alphabet), key=vocab.get)
    return transformers.CLIPTokenizer(
        vocab={_word_end(t): i for i, t in enumerate(tokens)}, merges=merges, model_max_length=77
    )


def _word_end(token: str) -> str:
    return token[:-1] + _BYTE[token[-1]] + "</w>" if token[-1] in _BYTE else token


def build_clap(folder: Path, seed: int = 0) -> Path:
    """A transformers ClapModel + ClapProcessor (unfused, like laion/clap-htsat-unfused) in `folder`."""
    folder = Path(folder)
    tokenizer = roberta_tokenizer()
    config = tiny_clap_config(len(tokenizer))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.ClapModel(config)
    extractor = transformers.ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad")  # 48 kHz, 64 mels, 10 s
    model.save_pretrained(folder)
    transformers.ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    save_tokenizer(tokenizer, folder)
    return folder


def build_clip(folder: Path, seed: int = 0) -> Path:
    """A transformers CLIPModel + CLIPProcessor taking 224x224 images, in `folder`."""
    folder = Path(folder)
    tokenizer = clip_tokenizer()
    ids = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    config = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=77,
            **ids,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=224,
            patch_size=32,
        ),
        projection_dim=32,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.CLIPModel(config)
    model.save_pretrained(folder)
    transformers.CLIPProcessor(image_processor=transformers.CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(
        folder
    )
    save_tokenizer(tokenizer, folder)
    return folder


def build_laion_clap(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """(`folder`/clap.pt, `folder`/roberta-base): a random laion_clap CLAP_Module (HTSAT-tiny, not
    fused; ~150 MB) saved in LAION's checkpoint layout, and a stand-in for roberta-base with a
    tiny vocabulary and one layer (config and tokenizer only: the checkpoint holds every weight)."""
    from pipelines.annotate.encoders.clap_laion import new_module

    folder = Path(folder)
    text_model = folder / "roberta-base"
    tokenizer = roberta_tokenizer()
    # hidden_size stays 768: laion's text projection is nn.Linear(768, 512) (clap_module/model.py).
    config = transformers.RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=768,
        num_hidden_layers=1,
        num_attention_heads=12,
        intermediate_size=64,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )
    config.save_pretrained(text_model)
    save_tokenizer(tokenizer, text_model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = new_module(text_model, "HTSAT-tiny", False, torch.device("cpu"))
    state = {f"module.{key}": value for key, value in module.model.state_dict().items()}
    # Checkpoints from transformers < 4.31 carry this buffer, and laion's own load_ckpt deletes it
    # without checking (clap_module/factory.py load_state_dict): keep the file loadable by it.
    state["module.text_branch.embeddings.position_ids"] = torch.arange(config.max_position_embeddings)[None]
    checkpoint = folder / "clap.pt"
    torch.save({"epoch": 0, "state_dict": state}, checkpoint)
    return checkpoint, text_model


def build_demo_models(folder: Path, seed: int = 0) -> dict[str, Path]:
    """{"clap": folder/clap, "clip": folder/clip}. The laion_clap model is left out: at ~150 MB
    (HTSAT-tiny has no smaller size) it costs more than the demo needs; see build_laion_clap."""
    folder = Path(folder)
    return {"clap": build_clap(folder / "clap", seed), "clip": build_clip(folder / "clip", seed)}
