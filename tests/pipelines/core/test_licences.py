"""Licence strings of every manifest format → SPDX-like ids; the corpus policy; attribution."""

from __future__ import annotations

import pytest
from records import clip_record

from pipelines.core.licences import YOUTUBE, LicencePolicy, attribution, clip_licence, licence_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Freesound APIv2 and FSD50K's clips info: the deed URL
        ("http://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
        ("https://creativecommons.org/licenses/by/4.0/", "CC-BY-4.0"),
        ("http://creativecommons.org/licenses/by/3.0/", "CC-BY-3.0"),
        ("http://creativecommons.org/licenses/by-nc/4.0/", "CC-BY-NC-4.0"),
        ("http://creativecommons.org/licenses/by-nc-sa/3.0/", "CC-BY-NC-SA-3.0"),
        ("http://creativecommons.org/licenses/sampling+/1.0/", "LicenseRef-CC-Sampling-Plus-1.0"),
        ("https://creativecommons.org/publicdomain/mark/1.0/", "LicenseRef-Public-Domain-Mark-1.0"),
        # Freesound's filter names
        ("Creative Commons 0", "CC0-1.0"),
        ("Attribution", "CC-BY-4.0"),
        ("Attribution Noncommercial", "CC-BY-NC-4.0"),
        ("Sampling+", "LicenseRef-CC-Sampling-Plus-1.0"),
        # table manifests: whatever people type
        ("CC BY 4.0", "CC-BY-4.0"),
        ("cc-by-nc 3.0", "CC-BY-NC-3.0"),
        ("CC-BY-SA-4.0", "CC-BY-SA-4.0"),
        ("cc0", "CC0-1.0"),
        ("CC-0 1.0", "CC0-1.0"),
        ("CC BY-NC-ND 4", "CC-BY-NC-ND-4.0"),
        ("all rights reserved", "LicenseRef-Other"),
        ("", "LicenseRef-Unknown"),
        (None, "LicenseRef-Unknown"),
        ("Standard YouTube License", YOUTUBE),
    ],
)
def test_licence_strings_become_spdx_like_ids(raw, expected):
    assert licence_id(raw) == expected


def test_youtube_segments_without_a_licence_are_marked_as_youtube():
    for fmt in ("audioset", "vggsound", "audiocaps"):
        assert clip_licence(clip_record("yt_abcdefghijk_0", format=fmt, source_id="abcdefghijk")) == YOUTUBE
    assert clip_licence(clip_record("fs_1", format="freesound", licence=None)) == "LicenseRef-Unknown"


def test_policy_allows_ids_and_version_families():
    policy = LicencePolicy(allow=["CC0-1.0", "CC-BY"])
    assert policy.refuses("CC0-1.0") is None
    assert policy.refuses("CC-BY-3.0") is None and policy.refuses("CC-BY-4.0") is None
    assert "CC-BY-NC-4.0 is not allowed" in policy.refuses("CC-BY-NC-4.0")
    assert policy.refuses(YOUTUBE) is not None
    assert LicencePolicy().refuses("CC-BY-NC-4.0") is None  # no policy: everything goes
    with pytest.raises(ValueError, match="not a licence id"):
        LicencePolicy(allow=["CC BY 4.0"])


def test_attribution_names_title_author_url_and_licence():
    freesound = clip_record(
        "fs_12",
        format="freesound",
        source_id="12",
        licence="http://creativecommons.org/licenses/by/3.0/",
        meta={"title": "rain.wav", "uploader": "alice"},
    )
    assert attribution(freesound) == {
        "clip_id": "fs_12",
        "source": "test",
        "title": "rain.wav",
        "author": "alice",
        "url": "https://freesound.org/s/12/",
        "licence": "CC-BY-3.0",
        "licence_raw": "http://creativecommons.org/licenses/by/3.0/",
    }
    video = clip_record(
        "yt_abcdefghijk_30000", format="audioset", source_id="abcdefghijk", segment={"start": 30.0, "end": 40.0}
    )
    assert attribution(video)["url"] == "https://www.youtube.com/watch?v=abcdefghijk&t=30s"
