"""Diffsound §IV-C / Algorithm 3 in the loader: masked texts drawn afresh per epoch (seeded, the same after a
resume: the per-sample generator is sample_rng(seed, epoch, slot, key)), with the text encoder's mask token."""

from __future__ import annotations

import os

import numpy as np
import pytest

from training.config import MbtgConfig
from training.data.examples import latent_example, mbtg_caption
from training.data.stream import sample_rng

os.environ.setdefault("HF_HUB_OFFLINE", "1")

META = {"selected_caption": "a dog barks at a man", "labels": [{"name": "Dog"}, {"name": "Speech"}]}
ON = MbtgConfig(probability=1.0, mask_token="<mask>")


def test_each_epoch_draws_a_new_masked_text_and_the_same_seed_draws_the_same():
    texts = [mbtg_caption(META, "k1", "a dog barks at a man", ON, sample_rng(0, epoch, 0, "k1")) for epoch in range(8)]
    for text in texts:
        words = text.split()
        assert "dog" in words and "speech" in words and set(words) <= {"dog", "speech", "<mask>"}
        gaps = " ".join(words).replace("dog", "|").replace("speech", "|").split("|")
        assert [g.split().count("<mask>") in (1, 2) for g in gaps] == [True] * 3  # m ∈ {1, 2} in each gap
    assert len(set(texts)) > 1  # redrawn per epoch (8 epochs: 8 draws from 2^3 texts)
    again = [mbtg_caption(META, "k1", "x", ON, sample_rng(0, epoch, 0, "k1")) for epoch in range(8)]
    assert again == texts  # a resumed run replays the same draws


def test_the_share_and_the_caption_kept_without_labels():
    half = MbtgConfig(probability=0.5, mask_token="[MASK]")
    drawn = [mbtg_caption(META, f"k{i}", "cap", half, sample_rng(1, 0, 0, f"k{i}")) for i in range(400)]
    share = np.mean([text != "cap" for text in drawn])
    assert 0.4 < share < 0.6 and all("[MASK]" in t for t in drawn if t != "cap")
    assert mbtg_caption({"labels": []}, "k", "cap", ON, sample_rng(0, 0, 0, "k")) == "cap"
    assert mbtg_caption(META, "k", "cap", None, sample_rng(0, 0, 0, "k")) == "cap"


def test_the_mask_token_is_the_text_encoders_own(tmp_path):
    from demo.models import build_clap
    from training.config import EncodersConfig, LdmConfig
    from training.models.conditioning import build_conditioner
    from training.tasks.ldm import mbtg_settings

    ldm = LdmConfig(conditioning="clap-text", encoders=EncodersConfig(clap=str(build_clap(tmp_path / "clap"))))
    resolved = mbtg_settings(MbtgConfig(probability=0.3), ldm)
    assert resolved.mask_token == build_conditioner(ldm).tokenizer.mask_token == "<mask>"  # RoBERTa's, not "[MASK]"
    assert mbtg_settings(MbtgConfig(probability=0.3, mask_token="[M]"), ldm).mask_token == "[M]"
    assert mbtg_settings(MbtgConfig(), ldm) is None
    with pytest.raises(ValueError, match="mask token"):
        latent_example(4, mbtg=MbtgConfig(probability=0.3))
