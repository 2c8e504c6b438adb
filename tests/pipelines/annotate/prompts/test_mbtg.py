import re

import pytest

from pipelines.annotate.prompts import mbtg_text

MASKS = r"\[MASK\](?: \[MASK\])?"  # one group of m ∈ {1, 2} masks


def test_mbtg_shape_matches_the_paper():
    # Diffsound §IV-C: "[MASK] [MASK] dog bark [MASK] man speaking [MASK]"
    pattern = re.compile(rf"^{MASKS} dog bark {MASKS} man speaking {MASKS}$")
    texts = {mbtg_text(["Dog bark", "Man speaking"], f"clip{i}") for i in range(50)}
    assert all(pattern.match(text) for text in texts)
    counts = {len(group.split()) for text in texts for group in re.findall(MASKS, text)}
    assert counts == {1, 2}
    assert "[MASK] [MASK] dog bark [MASK] man speaking [MASK]" in texts


def test_mbtg_is_deterministic_per_key():
    names = ["Speech", "Music", "Rain"]
    assert mbtg_text(names, "YT_abc_30000") == mbtg_text(names, "YT_abc_30000")
    assert len({mbtg_text(names, f"clip{i}") for i in range(20)}) > 5
    # a stable hash (sha256), not Python's salted hash(): the text for a key never changes between
    # processes; this golden value changes only if the seeding does (then existing annotations go stale)
    assert mbtg_text(names, "fixed-key") == "[MASK] speech [MASK] [MASK] music [MASK] [MASK] rain [MASK] [MASK]"


def test_mbtg_single_label_custom_token_and_counts():
    assert re.fullmatch(r"(?:<mask> ){3}church bell(?: <mask>){3}", mbtg_text(["Church_bell"], "k", "<mask>", [3]))
    assert mbtg_text([], "k") is None
    assert mbtg_text(["Dog", "dog"], "k").count("dog") == 1
    with pytest.raises(ValueError, match="positive"):
        mbtg_text(["Dog"], "k", counts=[0])
