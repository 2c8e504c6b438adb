"""The local mirror backend: templates, missing files, and ids that try to leave the mirror."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from pipelines.core.config import MediaConfig
from pipelines.core.records import Clip, ClipFailure
from pipelines.ingest.fetch.configs import LocalFetch
from pipelines.ingest.fetch.local import LocalBackend
from pipelines.ingest.fetch.templates import fill_path
from pipelines.ingest.worker import ClipWorker


def config(tmp_path, template: str = "mirror/{id}.wav") -> LocalFetch:
    return LocalFetch.model_validate({"backend": "local", "path_template": template}, context={"base_dir": tmp_path})


def test_template_resolves_against_the_config_folder(tmp_path, media):
    (tmp_path / "mirror").mkdir()
    shutil.copy(media.wav, tmp_path / "mirror" / "123.wav")
    w = ClipWorker({"fsd": SimpleNamespace(fetch=config(tmp_path))}, MediaConfig(), tmp_path / "out")
    row = w.ingest(Clip("fs_123", "fsd", "fsd50k", "123", None))
    assert row.status == "ok"
    assert w.cache.read_entry("fs_123").to_json_dict()["media_url"] == str(tmp_path / "mirror" / "123.wav")


def test_missing_file_is_permanent(tmp_path):
    (tmp_path / "mirror").mkdir()
    with pytest.raises(ClipFailure, match="file not found in the mirror") as caught:
        LocalBackend(config(tmp_path)).open(Clip("fs_9", "fsd", "fsd50k", "9", None), tmp_path, False)
    assert not caught.value.retryable


@pytest.mark.parametrize("source_id", ["../../etc/passwd", "..", "a/../../b", ".hidden", "x\x00y"])
def test_ids_cannot_leave_the_mirror(tmp_path, source_id):
    with pytest.raises(ClipFailure):
        fill_path(str(tmp_path / "mirror" / "{id}.wav"), source_id)


def test_names_with_spaces_and_quotes_stay_inside(tmp_path):
    path = fill_path(str(tmp_path / "mirror" / "{id}"), "Rain on a 'tin' roof (2).wav")
    assert path == tmp_path / "mirror" / "Rain on a 'tin' roof (2).wav"


@pytest.mark.parametrize("template", ["mirror/{name}.wav", "mirror/file.wav", "mirror/{id}/{x}.wav", "mirror/{id"])
def test_template_placeholders_are_checked_when_the_config_loads(tmp_path, template):
    with pytest.raises(ValidationError, match=r"template '\S*mirror/"):
        config(tmp_path, template)
