"""One tiny token run shared by the token tests: corpus, CLAP, VGGish-ish, codebook, token shards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiny_tokens import tiny_tokens_config
from train_corpus import build_train_corpus

from demo.models import build_clap
from training.config import load_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def token_corpus(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("token-corpus")
    return build_train_corpus(root / "shards"), build_clap(root / "clap")


@pytest.fixture(scope="session")
def token_run(tmp_path_factory, token_corpus) -> Path:
    """VGGish-ish → codebook (with the perceptual term) → token shards; returns the config path."""
    from training.tasks import encode_tokens, vggishish, vq

    root = tmp_path_factory.mktemp("token-run")
    path = tiny_tokens_config(root, *token_corpus)
    config = load_config(path)
    vggishish.train(config)
    path = tiny_tokens_config(
        root,
        *token_corpus,
        **{"codebook.loss.perceptual_weight": 0.1, "codebook.loss.perceptual": str(config.vggishish_dir / "model")},
    )
    config = load_config(path)
    vq.train(config)
    encode_tokens.encode(config)
    return path
