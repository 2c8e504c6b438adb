"""Atomic files and folders, and the digests that model provenance records."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pipelines.core.io import (
    atomic_path,
    commit_folder,
    content_sha256,
    remove_leftovers,
    staged_folder,
    write_json_atomic,
)


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path: Path):
    path = tmp_path / "out" / "a.json"
    write_json_atomic(path, {"b": 1, "a": 2})
    assert path.read_text() == '{\n "a": 2,\n "b": 1\n}\n'  # sorted keys: the same bytes every time
    with pytest.raises(RuntimeError), atomic_path(path) as temp:
        temp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text().startswith("{") and sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_a_staged_folder_replaces_the_old_one_whole_or_not_at_all(tmp_path: Path):
    target = tmp_path / "model"
    with staged_folder(target) as temp:
        temp.mkdir()
        (temp / "weights").write_text("v1")
    with pytest.raises(RuntimeError), staged_folder(target) as temp:
        temp.mkdir()
        (temp / "weights").write_text("v2-half")
        raise RuntimeError("killed")
    assert (target / "weights").read_text() == "v1" and [p.name for p in tmp_path.iterdir()] == ["model"]
    with staged_folder(target) as temp:
        temp.mkdir()
        (temp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2" and [p.name for p in tmp_path.iterdir()] == ["model"]


def test_the_first_commit_wins_unless_replacing(tmp_path: Path):
    first, second, target = tmp_path / ".a", tmp_path / ".b", tmp_path / "entry"
    for folder, text in ((first, "first"), (second, "second")):
        folder.mkdir()
        (folder / "done.json").write_text(text)
    assert commit_folder(first, target, marker="done.json") is True
    assert commit_folder(second, target, marker="done.json") is False and not second.exists()
    assert (target / "done.json").read_text() == "first"
    second.mkdir()
    (second / "done.json").write_text("second")
    assert commit_folder(second, target, marker="done.json", replace=True) is True
    assert (target / "done.json").read_text() == "second"


def test_leftovers_are_removed(tmp_path: Path):
    (tmp_path / "half").mkdir()
    (tmp_path / ".x.tmp-1").write_text("")
    assert remove_leftovers(tmp_path) == 2 and list(tmp_path.iterdir()) == []
    assert remove_leftovers(tmp_path / "missing") == 0


def test_file_checksum_is_sha256_of_its_bytes(tmp_path: Path):
    file = tmp_path / "clap.pt"
    file.write_bytes(b"weights")
    assert content_sha256(file) == hashlib.sha256(b"weights").hexdigest()
    file.write_bytes(b"WEIGHTS")  # same size; the new mtime invalidates the memo
    os.utime(file, ns=(0, 10**18))
    assert content_sha256(str(file)) == hashlib.sha256(b"WEIGHTS").hexdigest()


def test_folder_checksum_covers_names_and_contents_not_hidden_files(tmp_path: Path):
    one, two = tmp_path / "one", tmp_path / "two"
    for folder, order in ((one, ("a.json", "sub/b.bin")), (two, ("sub/b.bin", "a.json"))):
        for name in order:  # written in a different order: the same checksum
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(name.encode())
    assert content_sha256(one) == content_sha256(two)
    (one / ".cache").mkdir()
    (one / ".cache" / "lock").write_text("x")
    assert content_sha256(one) == content_sha256(two)
    (two / "sub" / "b.bin").rename(two / "sub" / "c.bin")
    assert content_sha256(one) != content_sha256(two)
    with pytest.raises(FileNotFoundError):
        content_sha256(tmp_path / "missing")
