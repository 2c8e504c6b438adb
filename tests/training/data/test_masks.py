"""Make-An-Audio §4.2's training masks: shapes, coverage statistics per family, determinism by seed."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.masks import FAMILIES, MaskGenerator, box_mask, chain_mask, frame_mask, wide_narrow, LAMA

SHAPES = [(256, 256), (624, 80), (64, 16)]


def coverage(family: str, shape: tuple[int, int], n: int = 150, **kwargs) -> np.ndarray:
    rng = np.random.default_rng(0)
    generator = MaskGenerator(family, **kwargs)
    return np.array([generator(shape, rng).mean() for _ in range(n)])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", SHAPES)
def test_masks_are_binary_float32_of_the_grid_and_deterministic_by_seed(family, shape):
    generator = MaskGenerator(family)
    first = [generator(shape, np.random.default_rng(7)) for _ in range(3)]
    again = [generator(shape, np.random.default_rng(7)) for _ in range(3)]
    other = generator(shape, np.random.default_rng(8))
    for mask, same in zip(first, again):
        assert mask.shape == shape and mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
        assert np.array_equal(mask, same)
    assert not np.array_equal(first[0], other)


def test_lama_coverage_per_family_at_lamas_size_and_on_mel_grids():
    """LaMa's settings at 256 × 256: thin ~ a quarter, medium less (fewer, wider chains or small boxes),
    thick the most and the most spread; the sqrt-area scaling keeps those figures on long mel grids."""
    for shape in SHAPES:
        thin, medium, thick = (coverage(f, shape) for f in ("thin", "medium", "thick"))
        assert 0.15 < thin.mean() < 0.35 and 0.08 < medium.mean() < 0.25 and 0.15 < thick.mean() < 0.4, shape
        assert medium.mean() < thin.mean() and medium.mean() < thick.mean()
        assert thick.std() > thin.std() and thick.max() > 0.5
        assert min(thin.min(), medium.min(), thick.min()) > 0  # every mask masks something


def test_medium_and_thick_mix_boxes_at_lamas_weight():
    """LaMa's mixed generator: one kind per mask, chains : boxes = 1 : 0.3; a box mask is whole rectangles."""
    rng = np.random.default_rng(0)
    generator, boxes = MaskGenerator("thick"), 0
    for _ in range(300):
        replay = np.random.default_rng()
        replay.bit_generator.state = rng.bit_generator.state
        mask = generator((128, 128), rng)
        if replay.random() < 0.3 / 1.3:
            boxes += 1
            assert np.array_equal(mask, box_mask(128, 128, LAMA["thick"][1], replay))
            rows, cols = np.nonzero(mask)
            assert mask[rows.min() : rows.max() + 1, cols.min()].any()  # axis-aligned, inside the margin
            assert rows.min() >= 5 and cols.min() >= 5  # margin 10 at 256 → 5 at 128
    assert 0.17 < boxes / 300 < 0.29
    assert MaskGenerator("thin")((64, 64), np.random.default_rng(3)).any()  # thin: chains only (LaMa: no boxes)


def test_frame_masks_are_whole_time_spans_covering_a_little_less_than_p():
    """wav2vec 2.0 span masking with p = 30/50/70 % (Make-An-Audio Table 2), M = 10."""
    for p in (0.3, 0.5, 0.7):
        cover = coverage("frame", (624, 80), p=p)
        assert 0.7 * p < cover.mean() <= p, p  # overlapping spans mask less than p·T
    mask = frame_mask(200, 8, 0.5, 10, np.random.default_rng(1))
    rows = mask[:, 0].astype(bool)
    assert (mask == mask[:, :1]).all()  # every frequency of a masked frame
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, rows, 0])))[::2]  # lengths of the masked runs
    assert len(runs) and (runs >= 10).all()
    assert frame_mask(5, 3, 0.5, 10, np.random.default_rng(0)).shape == (5, 3)  # a span longer than the clip


def test_wide_and_narrow_evaluation_masks_and_errors():
    rng = np.random.default_rng(0)
    wide = np.mean([wide_narrow((128, 64), "wide", rng).mean() for _ in range(100)])
    narrow = np.mean([wide_narrow((128, 64), "narrow", rng).max(axis=1).mean() for _ in range(100)])
    assert wide > 0.15 and narrow > 0
    with pytest.raises(ValueError, match="unknown mask family 'lama'"):
        MaskGenerator("lama")
    with pytest.raises(ValueError, match="0 < p < 1"):
        MaskGenerator("frame", p=1.5)
    with pytest.raises(ValueError, match="'wide' or 'narrow'"):
        wide_narrow((8, 8), "huge", rng)
    assert chain_mask(32, 32, LAMA["thin"][0], np.random.default_rng(0)).any()
