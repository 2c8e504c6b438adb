import numpy as np
import pytest

from pipelines.annotate.prompts import mixup


def test_lambda_follows_beta_5_5():
    rng = np.random.default_rng(0)
    lams = np.array([mixup(np.zeros(4), np.ones(4), rng)[1] for _ in range(4000)])
    assert ((lams >= 0) & (lams <= 1)).all()
    assert abs(lams.mean() - 0.5) < 0.01
    assert abs(lams.var() - 1 / 44) < 0.003  # Beta(5, 5): variance 25 / (100 · 11)


def test_mix_is_eq_8_and_seeded():
    x1, x2 = np.full((2, 3), 2.0, dtype=np.float32), np.full((2, 3), -1.0, dtype=np.float32)
    mixed, lam = mixup(x1, x2, np.random.default_rng(3))
    np.testing.assert_allclose(mixed, lam * 2.0 + (1 - lam) * -1.0, rtol=1e-6)
    assert mixed.dtype == np.float32 and mixed.shape == (2, 3)
    again, lam_again = mixup(x1, x2, np.random.default_rng(3))
    assert lam == lam_again and np.array_equal(mixed, again)
    assert mixup(x1, x2, np.random.default_rng(4))[1] != lam


def test_waveforms_of_different_lengths_are_zero_padded():
    mixed, lam = mixup(np.ones(3), np.ones(5), np.random.default_rng(0))
    np.testing.assert_allclose(mixed, [1, 1, 1, 1 - lam, 1 - lam])
    with pytest.raises(ValueError, match="equal shapes"):
        mixup(np.ones((2, 3)), np.ones((2, 4)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="positive"):
        mixup(np.ones(3), np.ones(3), np.random.default_rng(0), alpha=0)
