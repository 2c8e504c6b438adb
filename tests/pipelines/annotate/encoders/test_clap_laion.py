"""CLAP through laion_clap, offline: a random HTSAT-tiny checkpoint in LAION's layout and a one-layer
stand-in for roberta-base. The contract, determinism, batching invariance, and the silent
failure it guards against (a tokenizer of special tokens only)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import transformers

from pipelines.annotate.encoders import ModelLoadError, clap_provenance, load_clap
from pipelines.annotate.encoders.clap_laion import new_module, read_checkpoint
from pipelines.core.io import content_sha256


@pytest.fixture(scope="module")
def laion(laion_config):
    return load_clap(laion_config, "cpu")


@pytest.fixture(scope="module")
def audio(laion, windows) -> np.ndarray:
    return laion.embed_audio(windows[:2])  # HTSAT-tiny is the real size: ~0.15 s per window on CPU


def test_contract_and_determinism(laion, laion_config, audio, windows, texts):
    assert (laion.sample_rate, laion.window_samples, laion.dim) == (48000, 480000, 512)
    text = laion.embed_text(texts)
    assert audio.shape == (2, 512) and audio.dtype == np.float32
    assert text.shape == (4, 512) and text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(np.concatenate([audio, text]), axis=1), 1.0, atol=1e-5)
    assert np.all(np.abs(text @ text.T - np.eye(4)).max(axis=1) > 1e-4)  # the tokenizer tells texts apart
    again = load_clap(laion_config, "cpu")
    np.testing.assert_array_equal(again.embed_audio(windows[:2]), audio)
    np.testing.assert_array_equal(again.embed_text(texts), text)


def test_an_embedding_does_not_depend_on_its_batch(laion, audio, windows, texts):
    np.testing.assert_allclose(laion.embed_audio(windows[1:2]), audio[1:2], atol=1e-5)
    np.testing.assert_allclose(laion.embed_text([texts[1]]), laion.embed_text(texts)[1:2], atol=1e-5)


def test_provenance(laion, laion_config, laion_files):
    provenance = clap_provenance(laion_config)
    assert provenance == laion.provenance
    assert provenance["sha256"] == content_sha256(laion_files.checkpoint)
    assert provenance["text_model_sha256"] == content_sha256(laion_files.text_model)
    assert (provenance["backend"], provenance["amodel"], provenance["enable_fusion"]) == (
        "laion_clap",
        "HTSAT-tiny",
        "false",
    )


def test_redirection_is_undone_after_loading(laion):
    for cls in (transformers.RobertaTokenizer, transformers.BertTokenizer, transformers.RobertaModel):
        assert "from_pretrained" not in cls.__dict__


def test_the_checkpoint_is_in_laions_own_layout(laion_files, windows, audio):
    """laion_clap's load_ckpt (torch.load without weights_only, "module." prefixes, a position_ids
    buffer it deletes unconditionally) reads the file build_laion_clap writes."""
    module = new_module(laion_files.text_model, "HTSAT-tiny", False, torch.device("cpu"))
    module.load_ckpt(str(laion_files.checkpoint), verbose=False)
    with torch.inference_mode():
        theirs = module.get_audio_embedding_from_data(windows[:1], use_tensor=False)
    np.testing.assert_allclose(theirs, audio[:1], atol=1e-5)


def test_a_text_model_without_vocabulary_is_refused(laion_config, laion_files, tmp_path):
    folder = tmp_path / "roberta-base"
    folder.mkdir()
    shutil.copy(laion_files.text_model / "config.json", folder)
    # What laion_clap itself would get offline: no error, five special tokens, the same ids for every text.
    quiet = transformers.RobertaTokenizer.from_pretrained(folder, local_files_only=True)
    assert len(quiet) == 5 and quiet("a dog")["input_ids"] == quiet("rain")["input_ids"]
    config = laion_config.model_copy(update={"text_model": folder})
    with pytest.raises(
        ModelLoadError, match=r"annotate.clap.text_model .*: the tokenizer has 5 tokens .* lacks its vocabulary files"
    ):
        load_clap(config, "cpu")


def test_a_checkpoint_for_another_variant_is_refused(laion_config):
    with pytest.raises(
        ModelLoadError, match="does not fit amodel 'HTSAT-tiny' with enable_fusion True: .* missing keys"
    ):
        load_clap(laion_config.model_copy(update={"enable_fusion": True}), "cpu")


def test_unknown_audio_model_lists_the_valid_ones(laion_config):
    with pytest.raises(ModelLoadError, match="'HTSAT-huge' is not a laion_clap audio model; valid: .*HTSAT-tiny"):
        load_clap(laion_config.model_copy(update={"amodel": "HTSAT-huge"}), "cpu")


def _plant(marker: str) -> str:
    """What a hostile checkpoint would run on unpickling: here, it leaves a file behind."""
    with open(marker, "w") as out:
        out.write("code ran")
    return marker


class _Payload:
    """Unpickles by calling `_plant`: a global that no weights-only loader allows."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (_plant, (self.marker,))


def test_pickled_objects_are_not_loaded(tmp_path):
    path, marker = tmp_path / "clap.pt", tmp_path / "code-ran"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": _Payload(str(marker))}, path)
    with pytest.raises(
        ModelLoadError, match=r"holds pickled Python objects besides tensors.*Unsupported global: GLOBAL [\w.]*_plant"
    ):
        read_checkpoint(path)
    assert not marker.exists()  # nothing in the file ran
    torch.save(
        {"state_dict": {"module.w": torch.zeros(1), "module.text_branch.embeddings.position_ids": torch.arange(3)}},
        path,
    )
    assert list(read_checkpoint(path)) == ["w"]
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="not a readable torch checkpoint"):
        read_checkpoint(path)


def test_missing_checkpoint_is_named(laion_config, tmp_path):
    missing = tmp_path / "630k-audioset-best.pt"
    with pytest.raises(ModelLoadError, match=f"annotate.clap.model: checkpoint file not found: {missing}"):
        load_clap(laion_config.model_copy(update={"model": str(missing)}), "cpu")
