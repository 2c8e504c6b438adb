import numpy as np
import pytest

from pipelines.annotate.prompts import CurriculumSampler

COUNTS = [1, 2, 0, 1, 3, 1, 2, 1, 0, 4]  # singles: 0 3 5 7; multis: 1 4 6 9; unlabelled: 2 8
SINGLE, MULTI = {0, 3, 5, 7}, {1, 4, 6, 9}


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_algorithm_3_phases():
    sampler = CurriculumSampler(COUNTS, n=2, seed=1)
    assert sampler.epochs == 6 and sampler.excluded == 2
    orders = [_epoch(sampler, epoch) for epoch in range(6)]
    assert [sampler.phase(epoch) for epoch in range(6)] == ["single"] * 2 + ["multi"] * 4
    assert all(sorted(order) == sorted(SINGLE) for order in orders[:2])
    assert all(sorted(order) == sorted(MULTI) for order in orders[2:])
    sampler.set_epoch(0)
    assert len(sampler) == 4
    with pytest.raises(ValueError, match="outside Algorithm 3's"):
        sampler.set_epoch(6)


def test_shuffles_are_seeded_per_epoch():
    counts = [1] * 50 + [2] * 50
    a, b = CurriculumSampler(counts, n=3, seed=5), CurriculumSampler(counts, n=3, seed=5)
    assert [_epoch(a, e) for e in range(9)] == [_epoch(b, e) for e in range(9)]
    assert _epoch(a, 0) != _epoch(a, 1)  # reshuffled every epoch
    assert _epoch(a, 0) != _epoch(CurriculumSampler(counts, n=3, seed=6), 0)


def test_step_unit_streams_the_whole_curriculum():
    sampler = CurriculumSampler(COUNTS, n=3, seed=0, unit="step", batch_size=2)
    stream = list(sampler)
    assert len(stream) == len(sampler) == 18
    assert set(stream[:6]) == SINGLE and set(stream[6:]) <= MULTI
    assert sorted(stream[:4]) == sorted(SINGLE)  # each pass is a permutation
    assert stream == list(CurriculumSampler(COUNTS, n=3, seed=0, unit="step", batch_size=2))


def test_drives_a_torch_data_loader():
    torch = pytest.importorskip("torch")
    sampler = CurriculumSampler(COUNTS, n=1, seed=2)
    loader = torch.utils.data.DataLoader(np.arange(10) * 10, sampler=sampler, batch_size=3)
    sampler.set_epoch(1)
    batches = [batch.tolist() for batch in loader]
    assert [len(batch) for batch in batches] == [3, 1] and len(loader) == 2
    assert sum(batches, []) == [index * 10 for index in _epoch(sampler, 1)]


@pytest.mark.parametrize(
    "counts, kwargs, message",
    [
        ([1, 1, 0], {"n": 1}, "found 2 and 0"),
        ([1, 2], {"n": 0}, "n, batch_size ≥ 1"),
        ([1, 2], {"n": 1, "unit": "batch"}, "unit must be"),
        ([1, -1, 2], {"n": 1}, "non-negative"),
    ],
)
def test_bad_arguments(counts, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CurriculumSampler(counts, **kwargs)
