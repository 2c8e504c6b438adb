"""Clip id rules and the registry's error message."""

from __future__ import annotations

import pytest

from pipelines.core.records import (
    InvalidId,
    check_clip_id,
    check_file_name,
    freesound_clip_id,
    name_clip_id,
    url_clip_id,
    youtube_clip_id,
)
from pipelines.core.registry import Registry, UnknownName


def test_ids_derive_from_source_identity_not_order():
    assert youtube_clip_id("--PJHxphWEs", 30.0) == "yt_--PJHxphWEs_30000"
    assert freesound_clip_id("0123") == "fs_123"
    assert url_clip_id("http://a/x.mp4", 1.0, 2.0) == url_clip_id("http://a/x.mp4", 1.0, 2.0)
    assert url_clip_id("http://a/x.mp4", 1.0, 2.0) != url_clip_id("http://a/x.mp4", 2.0, 3.0)
    clotho = name_clip_id("clotho", "Distorted AM Radio noise.wav")
    assert clotho.startswith("clotho_Distorted-AM-Radio-noise_") and check_clip_id(clotho)


@pytest.mark.parametrize("bad", ["short", "--PJHxphWEs\n", "../../etc/pa", "$(touch pwn)", "a;rm -rf ~ "])
def test_bad_youtube_ids_are_refused(bad):
    with pytest.raises(InvalidId):
        youtube_clip_id(bad, 0.0)


@pytest.mark.parametrize("bad", ["0", "-4", "1.5", "12a", ""])
def test_bad_freesound_ids_are_refused(bad):
    with pytest.raises(InvalidId):
        freesound_clip_id(bad)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../x.wav", "starts with a dot"),
        ("a/b.wav", "contains a path separator"),
        (".hidden.wav", "starts with a dot"),
        ("x\x00.wav", "contains control characters"),
        ("", "empty"),
    ],
)
def test_bad_file_names_are_refused_with_the_real_reason(name, why):
    with pytest.raises(InvalidId, match=why):
        check_file_name(name)


def test_a_leading_dash_is_a_name_not_an_option():
    """About 1 in 64 YouTube ids starts with "-" (issue 14, item 1); tools get absolute paths."""
    assert check_file_name("--PJHxphWEs") == "--PJHxphWEs"
    assert name_clip_id("clotho", "-rf.wav").startswith("clotho_rf_")


@pytest.mark.parametrize("bad", ["٣", "²", "1_0", "12345678901234567890", " 7 7"])
def test_freesound_ids_are_plain_ascii_numbers(bad):
    with pytest.raises(InvalidId):
        freesound_clip_id(bad)


@pytest.mark.parametrize("start", [1e300, 1e15, -1.0, float("nan")])
def test_youtube_segment_starts_out_of_range_are_refused(start):
    with pytest.raises(InvalidId, match="bad start"):
        youtube_clip_id("AAAAAAAAAAA", start)


def test_registry_lists_the_valid_names():
    registry: Registry[int] = Registry("widget")
    registry.register("b")(1)
    registry.register("a")(2)
    with pytest.raises(UnknownName, match="unknown widget 'c'; valid names: a, b"):
        registry.get("c")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a")(3)
