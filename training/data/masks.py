"""Training masks for the inpainting fine-tune (Make-An-Audio §4.2): two families over a [T, F] grid
(mel frames × mel bins, or latent rows × columns); 1 = masked (to be generated), 0 = observed.

    irregular   LaMa's masks (Suvorov et al. 2022), which Make-An-Audio §4.2 adopts: polygonal chains of
                random segments dilated by a random width, and rectangles of arbitrary aspect ratio. The
                three settings are LaMa's own evaluation sets (configs/data_gen/random_{thin,medium,thick}_256):
                thin      4–50 chains, width ≤ 10, segment ≤ 40, no boxes
                medium    4–5 chains, width ≤ 50, segment ≤ 100; boxes 10–50 px (1–5) with weight 0.3
                thick     1–5 chains, width ≤ 100, segment ≤ 200; boxes 30–150 px (1–3, margin 10) with weight 0.3
                Sizes are LaMa's pixels at 256 × 256, scaled by sqrt(T·F) / 256, which keeps LaMa's coverage
                statistics on grids of other sizes and aspect ratios (our choice).
                As LaMa's mixed generator: one kind per mask, chains or boxes, by weight (1 : 0.3).
    frame       wav2vec 2.0's span masking (Baevski et al. 2020 §3.2, fairseq's compute_mask_indices):
                int(p·T/M + u) span starts (u ~ U[0, 1)) drawn without replacement from the T − M + 1
                possible ones, each masking M consecutive frames across every frequency; spans may
                overlap, so a little less than p of the frames is masked. Make-An-Audio Table 2: p = 30, 50, 70 %.

Every generator draws only from the numpy Generator it is given: the same seed gives the same masks.

    masks = MaskGenerator("frame", p=0.5)(shape=(256, 20), rng=np.random.default_rng(0))   # float32 [T, F]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

LAMA_SIZE = 256  # LaMa's settings are pixels of 256 × 256 images
FAMILIES = ("thin", "medium", "thick", "frame")


@dataclass(frozen=True)
class Chains:
    """LaMa's make_random_irregular_mask settings (pixels at 256 × 256)."""

    min_times: int
    max_times: int
    max_width: int
    max_len: int
    max_angle: int = 4


@dataclass(frozen=True)
class Boxes:
    """LaMa's make_random_rectangle_mask settings."""

    margin: int
    min_size: int
    max_size: int
    min_times: int
    max_times: int


# LaMa configs/data_gen/random_*_256.yaml: (chains, boxes or None, box weight against chains' 1)
LAMA = {
    "thin": (Chains(4, 50, 10, 40), None, 0.0),
    "medium": (Chains(4, 5, 50, 100), Boxes(0, 10, 50, 1, 5), 0.3),
    "thick": (Chains(1, 5, 100, 200), Boxes(10, 30, 150, 1, 3), 0.3),
}


class MaskGenerator:
    """A family by name ("thin", "medium", "thick", "frame"); `p` and `span` for "frame" (wav2vec 2.0: M = 10)."""

    def __init__(self, family: str, p: float = 0.5, span: int = 10):
        if family not in FAMILIES:
            raise ValueError(f"unknown mask family {family!r}; valid: {', '.join(FAMILIES)}")
        if family == "frame" and not (0 < p < 1 and span >= 1):
            raise ValueError(f"frame masks need 0 < p < 1 and span >= 1, got p={p}, span={span}")
        self.family, self.p, self.span = family, p, span

    def __call__(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        frames, bins = shape
        if self.family == "frame":
            return frame_mask(frames, bins, self.p, self.span, rng)
        chains, boxes, box_weight = LAMA[self.family]
        if boxes is not None and rng.random() < box_weight / (1 + box_weight):
            return box_mask(frames, bins, boxes, rng)
        return chain_mask(frames, bins, chains, rng)


def frame_mask(frames: int, bins: int, p: float, span: int, rng: np.random.Generator) -> np.ndarray:
    span = min(span, frames)
    count = min(int(p * frames / span + rng.random()), frames - span + 1)
    starts = rng.choice(frames - span + 1, size=count, replace=False) if count else np.zeros(0, int)
    rows = np.zeros(frames, bool)
    for start in starts:
        rows[start : start + span] = True
    return np.repeat(rows[:, None], bins, axis=1).astype(np.float32)


def chain_mask(frames: int, bins: int, cfg: Chains, rng: np.random.Generator) -> np.ndarray:
    """LaMa's irregular mask: `times` chains of 1–5 segments (angle, length, brush width drawn per segment),
    over a canvas whose x is frequency and y is time."""
    scale = math.sqrt(frames * bins) / LAMA_SIZE
    canvas = Image.new("L", (bins, frames), 0)
    draw = ImageDraw.Draw(canvas)
    for i in range(int(rng.integers(cfg.min_times, cfg.max_times + 1))):
        x, y = int(rng.integers(bins)), int(rng.integers(frames))
        for _ in range(1 + int(rng.integers(5))):
            angle = 0.01 + int(rng.integers(cfg.max_angle))
            angle = 2 * math.pi - angle if i % 2 == 0 else angle
            length = (10 + int(rng.integers(cfg.max_len))) * scale
            width = max(1, round((5 + int(rng.integers(cfg.max_width))) * scale))
            end_x = int(np.clip(x + length * math.sin(angle), 0, bins))
            end_y = int(np.clip(y + length * math.cos(angle), 0, frames))
            draw.line([(x, y), (end_x, end_y)], fill=1, width=width)
            x, y = end_x, end_y
    return np.asarray(canvas, dtype=np.float32)


def box_mask(frames: int, bins: int, cfg: Boxes, rng: np.random.Generator) -> np.ndarray:
    """LaMa's rectangles: 1–N boxes, each side in [min, max) (scaled), inside the margin."""
    scale = math.sqrt(frames * bins) / LAMA_SIZE
    margin = round(cfg.margin * scale)
    low = max(1, round(cfg.min_size * scale))
    high = max(low + 1, min(round(cfg.max_size * scale), frames - 2 * margin, bins - 2 * margin))
    mask = np.zeros((frames, bins), np.float32)
    for _ in range(int(rng.integers(cfg.min_times, cfg.max_times + 1))):
        height, width = (int(rng.integers(low, high)) for _ in range(2))
        height, width = min(height, frames - 2 * margin), min(width, bins - 2 * margin)
        top = int(rng.integers(margin, max(margin, frames - margin - height) + 1))
        left = int(rng.integers(margin, max(margin, bins - margin - width) + 1))
        mask[top : top + height, left : left + width] = 1
    return mask


def wide_narrow(shape: tuple[int, int], kind: str, rng: np.random.Generator) -> np.ndarray:
    """The evaluation masks of Make-An-Audio Table 2, which the paper does not define: "wide" = LaMa's thick
    setting, "narrow" = its thin setting (LaMa's own wide/narrow evaluation split). Our reading."""
    if kind not in ("wide", "narrow"):
        raise ValueError(f"evaluation masks are 'wide' or 'narrow', got {kind!r}")
    return MaskGenerator("thick" if kind == "wide" else "thin")(shape, rng)
