"""Encoder settings: backend names, batch bounds, model paths against the config's folder,
and the laion_clap-only keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.annotate.encoders import ClapConfig, ClipConfig


def test_unknown_backend_lists_the_valid_names():
    with pytest.raises(ValidationError, match=r"unknown CLAP backend 'hf'; valid names: laion_clap, transformers"):
        ClapConfig(model="m", backend="hf")


def test_batch_min_above_max_is_rejected():
    with pytest.raises(ValidationError, match=r"min \(8\) must not exceed max \(4\)"):
        ClapConfig(model="m", batch={"min": 8, "max": 4})
    assert ClipConfig(model="m", batch={"min": 4, "max": 4}).batch.max == 4


def test_model_paths_resolve_against_the_config_folder_and_ids_stay(tmp_path: Path):
    (tmp_path / "models" / "clap").mkdir(parents=True)
    context = {"base_dir": tmp_path}
    as_folder = ClapConfig.model_validate({"model": "models/clap"}, context=context)
    assert as_folder.model == str(tmp_path / "models" / "clap")
    assert (
        ClapConfig.model_validate({"model": "laion/clap-htsat-unfused"}, context=context).model
        == "laion/clap-htsat-unfused"
    )
    # Not a hub id's shape (two slashes, or "./"): a path even when it does not exist yet.
    assert ClipConfig.model_validate({"model": "data/demo-models/clip"}, context=context).model == str(
        tmp_path / "data/demo-models/clip"
    )
    assert ClipConfig.model_validate({"model": "./clip"}, context=context).model == str(tmp_path / "clip")


def test_laion_checkpoint_is_always_a_path(tmp_path: Path):
    (tmp_path / "roberta").mkdir()
    config = ClapConfig.model_validate(
        {"backend": "laion_clap", "model": "clap.pt", "text_model": "roberta"}, context={"base_dir": tmp_path}
    )
    assert config.model == str(tmp_path / "clap.pt")
    assert config.text_model == tmp_path / "roberta"


def test_laion_needs_a_text_model_and_ten_second_windows(tmp_path: Path):
    with pytest.raises(ValidationError, match="backend laion_clap needs text_model"):
        ClapConfig(backend="laion_clap", model="clap.pt")
    with pytest.raises(ValidationError, match="set window_seconds: 10"):
        ClapConfig(backend="laion_clap", model="clap.pt", text_model=tmp_path, window_seconds=5)


def test_laion_only_keys_are_refused_with_transformers_and_a_dump_reloads(tmp_path: Path):
    with pytest.raises(ValidationError, match="amodel, enable_fusion: only used by backend laion_clap"):
        ClapConfig(model="m", amodel="PANN-14", enable_fusion=True)
    config = ClapConfig(model="m", window_seconds=5)
    assert ClapConfig.model_validate(config.model_dump()) == config


def test_unknown_keys_are_errors():
    with pytest.raises(ValidationError, match="did you mean 'window_seconds'"):
        ClapConfig(model="m", window_second=10)
