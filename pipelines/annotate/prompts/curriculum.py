"""Diffsound's curriculum (seed 002 §IV-C, Algorithm 3): single-event clips first, then multi-event.

Algorithm 3 splits the clips by their number of events into the Single Event Set (SES) and the
Multiple Event Set (MES), trains `for i = 1 to n` epochs on the SES, then `for i = 1 to 2·n` epochs
on the MES, and returns: training ends after 3·n epochs, and the SES is not revisited. (The
introduction's summary, "gradually add the audios that include multiple events", reads as if the
SES stayed in; the algorithm does not keep it, and this sampler follows the algorithm.)

Clips with no event (no labels; pipelines.core.labels.event_count = 0) are in neither set and never
drawn: Algorithm 3 builds every training text from the labels (text = MBTG(l)).

`unit="epoch"`: one epoch per iteration, reshuffled from (seed, epoch); call set_epoch like a
DistributedSampler's. `unit="step"`: one pass yields the whole curriculum as a stream, n·batch_size
SES indices then 2·n·batch_size MES indices, each set reshuffled on every pass through it. Usable as
a torch Sampler (it has __iter__ and __len__) without importing torch; it does not split indices
between DDP ranks.
"""

from __future__ import annotations

from typing import Iterator, Literal, Sequence

import numpy as np

Phase = Literal["single", "multi"]


class CurriculumSampler:
    def __init__(
        self,
        event_counts: Sequence[int],
        n: int,
        seed: int = 0,
        unit: Literal["epoch", "step"] = "epoch",
        batch_size: int = 1,
    ):
        counts = np.asarray(event_counts, dtype=np.int64)
        if n < 1 or batch_size < 1 or seed < 0:
            raise ValueError(f"curriculum: needs n, batch_size ≥ 1 and seed ≥ 0; got {n}, {batch_size}, {seed}")
        if unit not in ("epoch", "step"):
            raise ValueError(f"curriculum: unit must be 'epoch' or 'step', got {unit!r}")
        if counts.ndim != 1 or (counts < 0).any():
            raise ValueError("curriculum: event_counts must be one non-negative count per clip")
        self.single = np.flatnonzero(counts == 1)
        self.multi = np.flatnonzero(counts >= 2)
        if not len(self.single) or not len(self.multi):
            raise ValueError(
                f"curriculum: needs single- and multi-event clips, found {len(self.single)} and {len(self.multi)} "
                f"among {len(counts)}; train without the curriculum"
            )
        self.excluded = int((counts == 0).sum())  # unlabelled clips, never drawn
        self.n, self.seed, self.unit, self.batch_size = n, seed, unit, batch_size
        self.epoch = 0

    @property
    def epochs(self) -> int:
        """Epochs Algorithm 3 trains: n on the SES, then 2·n on the MES."""
        return 3 * self.n

    def phase(self, epoch: int) -> Phase:
        if not 0 <= epoch < self.epochs:
            raise ValueError(f"curriculum: epoch {epoch} is outside Algorithm 3's 3·n = {self.epochs} epochs (0-based)")
        return "single" if epoch < self.n else "multi"

    def set_epoch(self, epoch: int) -> None:
        if self.unit == "epoch":
            self.phase(epoch)  # fail here, not in the middle of the data loader
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if self.unit == "epoch":
            pool = self.single if self.phase(self.epoch) == "single" else self.multi
            yield from _shuffled(pool, self.seed, self.epoch).tolist()
        else:
            yield from _stream(self.single, self.n * self.batch_size, self.seed, 0)
            yield from _stream(self.multi, 2 * self.n * self.batch_size, self.seed, 1)

    def __len__(self) -> int:
        if self.unit == "step":
            return 3 * self.n * self.batch_size
        return len(self.single if self.phase(self.epoch) == "single" else self.multi)


def _shuffled(pool: np.ndarray, *seed: int) -> np.ndarray:
    return np.random.default_rng(list(seed)).permutation(pool)


def _stream(pool: np.ndarray, count: int, seed: int, phase: int) -> Iterator[int]:
    """`count` indices from `pool`, one fresh permutation per pass through it."""
    passes = -(-count // len(pool))
    drawn = np.concatenate([_shuffled(pool, seed, phase, i) for i in range(passes)])
    yield from drawn[:count].tolist()
