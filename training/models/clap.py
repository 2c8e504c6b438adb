"""A CLAP built from scratch for `t2a train clap` without `clap.init`: the real architecture
(transformers `ClapModel`: RoBERTa text, HTSAT audio) at a small size, with a byte-level BPE tokenizer
trained offline on the AudioSet ontology's names and descriptions plus common caption words, in
roberta-base's special-token order. The demo's tiny models (demo/models.py) are built from these too.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import transformers

VOCAB = 1000  # BPE vocabulary of the tokenizer trained here
CAPTION_WORDS = (
    "a an the of in on at with while and then as near far from into by loudly softly quietly "
    "man woman men women people child children baby crowd person speaks talks sings shouts laughs cries "
    "dog barks cat meows bird chirps birds sing rooster crows cow moos horse neighs "
    "car engine idles revs truck bus train passes siren wails horn honks motorcycle aircraft flies "
    "water flows rain falls wind blows thunder rumbles waves crash fire crackles "
    "music plays guitar piano drum beats bell rings clock ticks door closes footsteps walking typing "
    "background foreground distance repeatedly briefly followed by sound noise"
)


def tokenizer_corpus() -> list[str]:
    text = resources.files("pipelines").joinpath("data", "audioset_ontology.json").read_text()
    classes = json.loads(text)
    return [c["name"] for c in classes] + [c["description"] for c in classes] + [CAPTION_WORDS]


def roberta_tokenizer() -> transformers.RobertaTokenizer:
    # Special tokens in roberta-base's order: <s> 0, <pad> 1, </s> 2, <unk> 3 (pad_token_id 1).
    base = transformers.RobertaTokenizer(vocab={"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}, merges=[])
    return base.train_new_from_iterator(tokenizer_corpus(), vocab_size=VOCAB)


def save_tokenizer(tokenizer: transformers.PreTrainedTokenizerBase, folder: Path) -> None:
    """tokenizer.json (what transformers 5 reads) plus the classic vocab.json + merges.txt."""
    tokenizer.save_pretrained(folder)
    tokenizer.backend_tokenizer.model.save(str(folder))


def tiny_clap_config(vocab_size: int) -> transformers.ClapConfig:
    """The real CLAP architecture (RoBERTa text, HTSAT audio) at a tiny size: ~0.4 M parameters."""
    return transformers.ClapConfig(
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=80,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
        ),
        # HTSAT (Swin) with one block per stage; spec_size, window and patches as in the real model.
        audio_config=dict(
            patch_embeds_hidden_size=16, depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 2], hidden_size=128
        ),
        projection_dim=32,
    )
