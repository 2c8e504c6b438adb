"""Diffsound's transition matrices, cumulative parameters and posterior (training/models/token_dd.py), small K and T."""

from __future__ import annotations

import pytest
import torch

from training.models.token_dd import DiscreteSchedule, TokenDenoiser, dd_loss, sample_tokens

K, T = 5, 6


@pytest.mark.parametrize("kind", ["uniform", "mask", "mask-uniform"])
def test_every_column_of_every_step_matrix_sums_to_one(kind):
    schedule = DiscreteSchedule(K, T, kind, final_mask=0.9)
    for t in range(1, T + 1):
        q = schedule.step_matrix(t)
        assert q.shape == (K + 1, K + 1) and (q >= 0).all()
        torch.testing.assert_close(q.sum(0), torch.ones(K + 1, dtype=torch.float64))
    assert schedule.cumulative_matrix(0).equal(torch.eye(K + 1, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["uniform", "mask", "mask-uniform"])
def test_the_cumulative_parameters_equal_the_product_of_the_step_matrices(kind):
    schedule = DiscreteSchedule(K, T, kind, final_mask=0.9)
    product = torch.eye(K + 1, dtype=torch.float64)
    for t in range(1, T + 1):
        product = schedule.step_matrix(t) @ product  # Q̄_t = Q_t … Q_1 (eq. 9)
        torch.testing.assert_close(schedule.cumulative_matrix(t), product)
    # the linear schedule of §VI-B at T: ᾱ_T = 0, γ̄_T = the final mask rate, K·β̄_T the rest
    expected = {"uniform": 0.0, "mask": 1.0, "mask-uniform": 0.9}[kind]
    assert float(schedule.alpha_bar[T]) == 0 and float(schedule.gamma_bar[T]) == pytest.approx(expected)
    assert float(K * schedule.beta_bar[T]) == pytest.approx(1 - expected)


def brute_force_posterior(schedule: DiscreteSchedule, xt: int, x0_probs: torch.Tensor, t: int, s: int) -> torch.Tensor:
    """Σ_x0 p(x0)·q(x_t | x_s) q(x_s | x_0) / q(x_t | x_0) with explicit matrices (eq. 10 then eq. 21)."""
    transition = torch.eye(K + 1, dtype=torch.float64)
    for step in range(s + 1, t + 1):
        transition = schedule.step_matrix(step) @ transition  # q(x_t | x_s)
    out = torch.zeros(K + 1, dtype=torch.float64)
    for x0 in range(K):
        if x0_probs[x0] == 0:
            continue
        q_s = schedule.cumulative_matrix(s)[:, x0]
        q_t = schedule.cumulative_matrix(t)[xt, x0]
        if q_t == 0:
            continue
        out += x0_probs[x0] * transition[xt, :] * q_s / q_t
    return out / out.sum()


@pytest.mark.parametrize("kind", ["uniform", "mask", "mask-uniform"])
def test_the_closed_form_posterior_equals_bayes_with_the_matrices(kind):
    schedule = DiscreteSchedule(K, T, kind, final_mask=0.9)
    generator = torch.Generator().manual_seed(0)
    checked = 0
    for t in range(1, T + 1):
        for s in {t - 1, max(t - 3, 0)}:
            for xt in range(K + 1):
                if kind == "uniform" and xt == K:
                    continue
                if kind == "mask" and xt < K and t == T:
                    continue  # ᾱ_T = 0: a code is impossible at T
                x0_probs = torch.rand(K, generator=generator, dtype=torch.float64)
                x0_probs /= x0_probs.sum()
                for probs in (x0_probs, torch.nn.functional.one_hot(torch.tensor(xt % K), K).double()):
                    want = brute_force_posterior(schedule, xt, probs, t, s)
                    got = schedule.posterior(
                        torch.tensor([[xt]]), probs[None, :, None], torch.tensor([t]), torch.tensor([s])
                    )[0, :, 0]
                    torch.testing.assert_close(got, want)
                    checked += 1
    assert checked > 50


def test_q_sample_follows_the_cumulative_distribution():
    schedule = DiscreteSchedule(K, T, "mask-uniform", final_mask=0.9)
    x0 = torch.full((1, 20000), 2)
    t = 3
    xt = schedule.q_sample(x0, torch.tensor([t]), torch.Generator().manual_seed(0))
    counts = torch.bincount(xt.flatten(), minlength=K + 1).double() / xt.numel()
    torch.testing.assert_close(counts, schedule.cumulative_matrix(t)[:, 2], atol=0.015, rtol=0)


def test_the_denoiser_loss_and_sampling_are_finite_and_deterministic_by_seed():
    schedule = DiscreteSchedule(K, T, "mask-uniform")
    model = TokenDenoiser(codebook_size=K, grid=(3, 2), text_dim=4, timesteps=T, layers=1, heads=2, dim=8)
    states, mask = torch.randn(2, 3, 4), torch.ones(2, 3)
    loss, parts = dd_loss(model, schedule, torch.randint(K, (2, 6)), states, mask, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and parts["loss_vlb"] >= 0
    loss.backward()
    draws = [
        sample_tokens(
            model, schedule, states, mask, 6, steps=3, generators=[torch.Generator().manual_seed(i) for i in (4, 5)]
        )
        for _ in range(2)
    ]
    assert draws[0].equal(draws[1]) and draws[0].shape == (2, 6) and int(draws[0].max()) < K
