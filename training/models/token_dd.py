"""Diffsound's discrete diffusion over codebook indices (Diffsound §IV-A/B, Algorithms 1–2, eqs. 9–23).

Indexing. The paper numbers the K codes 1..K and puts [MASK] at K + 1; here codes are 0..K−1 (the
codebook's own indices) and [MASK] is index K: the (K + 1)-th category, the same state. Matrices act on
one-hot column vectors as in the paper: Q_t[i, j] = q(x_t = i | x_{t−1} = j), so every column sums to 1.

Transitions (`DiscreteSchedule`), one parametrisation for the three kinds: per step a token stays with
α_t, is resampled uniformly over the K codes with K·β_t, becomes [MASK] with γ_t (α_t + K·β_t + γ_t = 1);
[MASK] stays [MASK].
    uniform        eq. 11: γ_t = 0 (the [MASK] row and column exist but are never reached)
    mask           eq. 14: β_t = 0 (the paper's "β_t" of eq. 14 is the stay probability, α_t here)
    mask-uniform   eq. 17 (§VI-B's default)
Only the cumulative ᾱ_t, β̄_t, γ̄_t are stored, not the (K + 1)² matrices: q(x_t | x_0) = ᾱ_t·c(x_0) +
β̄_t on the codes + γ̄_t·c([MASK]) (eqs. 13, 16, 19). The linear schedule of §VI-B: ᾱ_t falls linearly
from 1 to 0 and γ̄_t rises linearly from 0 to γ̄_T (0.9 for mask-uniform, Table IV; 1 for mask; 0 for
uniform), K·β̄_t = 1 − ᾱ_t − γ̄_t (0.1 at T for mask-uniform); the per-step values follow:
α_t = ᾱ_t / ᾱ_{t−1}, γ_t = 1 − (1 − γ̄_t)/(1 − γ̄_{t−1}), K·β_t = 1 − α_t − γ_t.

Posterior (eq. 10) in closed form, for any s < t (s = t − 1 in training, s = t − Δ_t in fast inference):
q(x_s | x_t, x_0) ∝ q(x_t | x_s)·q(x_s | x_0), with q(x_t | x_s) the s → t transition (α = ᾱ_t/ᾱ_s,
1 − γ = (1 − γ̄_t)/(1 − γ̄_s)). The reparameterisation (eq. 21): the network predicts p_θ(x̃_0 | x_t, y)
over the K codes and p_θ(x_s | x_t, y) = Σ_x̃0 q(x_s | x_t, x̃_0)·p_θ(x̃_0 | x_t, y), computed without the
matrices: Σ_x̃0 w(x̃_0)·q(x_s | x̃_0) with w = p_θ(x̃_0)/q(x_t | x̃_0), times q(x_t | x_s) — exactly normalised.

Loss (Algorithm 1, eqs. 20–23): t ~ U{1..T}, x_t ~ q(x_t | x_0), L_vlb's term at t: KL(q(x_{t−1} | x_t, x_0)
‖ p_θ(x_{t−1} | x_t, y)) (at t = 1 that is −log p_θ(x_0 | x_1, y), the decoder term eq. 20 leaves implicit),
plus the prior term KL(q(x_T | x_0) ‖ p(x_T)) (no gradient: p(x_T) is the stationary distribution, eqs. 12,
15, 18), and λ·L_x0 = −λ·log p_θ(x_0 | x_t, y) (eq. 22) with λ = 1e-4 (§VI-B); in nats per token.

Sampling (Algorithm 2): x_T from p(x_T), then x_{t−Δ} ~ p_θ(x_{t−Δ} | x_t, y) for t = T, T − Δ, …, down to 0
(`steps` evenly spaced times: Δ = T/steps, the fast inference strategy), with optional classifier-free
guidance on the predicted log p(x̃_0) (u + w·(c − u), renormalised).

The denoiser (`TokenDenoiser`, §VI-B 3): a transformer whose blocks hold self-attention, cross-attention to
the text features and a feed-forward block (diffusers' Attention and FeedForward), the timestep injected by
adaptive layer norm before each (AdaLN: LN(h)·(1 + scale_t) + shift_t, one t per sample; diffusers'
AdaLayerNorm takes one t per batch); tokens embedded over K + 1 categories plus learned time-row and
frequency-column position embeddings; output K logits.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

EPS = 1e-30
KINDS = ("uniform", "mask", "mask-uniform")


class DiscreteSchedule:
    """ᾱ_t, β̄_t, γ̄_t for t = 0..T (index t; t = 0: no noise) and the per-step α_t, β_t, γ_t (t = 1..T)."""

    def __init__(self, codebook_size: int, timesteps: int, kind: str = "mask-uniform", final_mask: float = 0.9):
        if kind not in KINDS:
            raise ValueError(f"unknown transition {kind!r}; valid: {', '.join(KINDS)}")
        self.K, self.T, self.kind = codebook_size, timesteps, kind
        final = {"uniform": 0.0, "mask": 1.0}.get(kind, final_mask)
        t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        self.alpha_bar = 1.0 - t
        self.gamma_bar = final * t
        self.beta_bar = ((1.0 - self.alpha_bar - self.gamma_bar) / codebook_size).clamp(min=0)
        if kind == "mask":
            self.beta_bar = torch.zeros_like(self.beta_bar)
        alpha, gamma = self.step_params(torch.arange(1, timesteps + 1), torch.arange(0, timesteps))
        self.alpha = torch.cat([torch.ones(1, dtype=torch.float64), alpha])
        self.gamma = torch.cat([torch.zeros(1, dtype=torch.float64), gamma])
        self.beta = ((1.0 - self.alpha - self.gamma) / codebook_size).clamp(min=0)

    def step_params(self, t: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """(α, γ) of the s → t transition (s < t): stay α = ᾱ_t/ᾱ_s, mask 1 − (1 − γ̄_t)/(1 − γ̄_s)."""
        alpha = self.alpha_bar[t] / self.alpha_bar[s].clamp(min=1e-300)
        gamma = 1.0 - (1.0 - self.gamma_bar[t]) / (1.0 - self.gamma_bar[s]).clamp(min=1e-300)
        return alpha, gamma.clamp(0, 1)

    # --- explicit matrices, for tests and small K -----------------------------------------------

    def matrix(self, alpha: float, beta: float, gamma: float) -> Tensor:
        """Q ∈ R^{(K+1)×(K+1)}, Q[i, j] = q(i | j) (eqs. 11, 14, 17)."""
        K = self.K
        q = torch.zeros(K + 1, K + 1, dtype=torch.float64)
        q[:K, :K] = beta
        q[range(K), range(K)] += alpha
        q[K, :K] = gamma
        q[K, K] = 1.0
        return q

    def step_matrix(self, t: int) -> Tensor:
        return self.matrix(float(self.alpha[t]), float(self.beta[t]), float(self.gamma[t]))

    def cumulative_matrix(self, t: int) -> Tensor:
        """Q̄_t from the stored ᾱ_t, β̄_t, γ̄_t (eq. 19: Q̄_t c(x_0) = ᾱ_t c(x_0) + (γ̄_t − β̄_t) c(K+1) + β̄_t)."""
        return self.matrix(float(self.alpha_bar[t]), float(self.beta_bar[t]), float(self.gamma_bar[t]))

    # --- distributions over K + 1 categories, [B, K+1, N] -------------------------------------------

    def q_given_x0(self, x0_probs: Tensor, t: Tensor) -> Tensor:
        """q(x_t | x_0) for a distribution over x_0 on the K codes [B, K, N] → [B, K+1, N]; t [B]."""
        a, b, g = (v[t].to(x0_probs)[:, None, None] for v in (self.alpha_bar, self.beta_bar, self.gamma_bar))
        codes = a * x0_probs + b * x0_probs.sum(1, keepdim=True)
        mask = g * x0_probs.sum(1, keepdim=True)
        return torch.cat([codes, mask], dim=1)

    def q_sample(self, x0: Tensor, t: Tensor, generator: torch.Generator) -> Tensor:
        """x_t ~ q(x_t | x_0) (Algorithm 1 line 6); x0 [B, N] int64 → [B, N]."""
        onehot = nn.functional.one_hot(x0, self.K).permute(0, 2, 1).double()
        probs = self.q_given_x0(onehot, t).permute(0, 2, 1).reshape(-1, self.K + 1)
        draws = torch.multinomial(probs.float().cpu(), 1, generator=generator).view(x0.shape)
        return draws.to(x0.device)

    def posterior(self, xt: Tensor, x0_probs: Tensor, t: Tensor, s: Tensor | None = None) -> Tensor:
        """Σ_x0 q(x_s | x_t, x_0)·p(x_0) (eqs. 10, 21) → [B, K+1, N]; xt [B, N], x0_probs [B, K, N], t, s [B]."""
        s = t - 1 if s is None else s
        dtype = x0_probs.dtype
        K = self.K
        is_mask = (xt == K)[:, None]  # [B, 1, N]
        # q(x_t | x̃_0) over x̃_0 (on the codes): mask: γ̄_t; code i: ᾱ_t·[x̃_0 = i] + β̄_t
        a_t, b_t, g_t = (v[t].to(dtype)[:, None, None] for v in (self.alpha_bar, self.beta_bar, self.gamma_bar))
        onehot_t = nn.functional.one_hot(xt.clamp(max=K - 1), K).permute(0, 2, 1).to(dtype)
        q_t_x0 = torch.where(is_mask, g_t.expand_as(onehot_t), a_t * onehot_t + b_t)
        weight = x0_probs / q_t_x0.clamp(min=EPS)  # [B, K, N]
        # Σ_x̃0 w(x̃_0)·q(x_s | x̃_0)
        mixed = self.q_given_x0(weight, s)  # [B, K+1, N]
        # × q(x_t | x_s) as a function of x_s
        alpha, gamma = self.step_params(t, s)
        alpha, gamma = alpha.to(dtype)[:, None, None], gamma.to(dtype)[:, None, None]
        beta = ((1 - alpha - gamma) / K).clamp(min=0)
        onehot_full = nn.functional.one_hot(xt, K + 1).permute(0, 2, 1).to(dtype)  # [B, K+1, N]
        codes_col = torch.ones_like(onehot_full)
        codes_col[:, K] = 0
        from_code = alpha * onehot_full + beta * codes_col  # x_t a code: reached from code j by stay/uniform
        from_mask = gamma * codes_col + onehot_full * 1.0  # x_t = [MASK]: from a code by γ, from [MASK] surely
        likelihood = torch.where(is_mask, from_mask, from_code)
        out = likelihood * mixed
        return out / out.sum(1, keepdim=True).clamp(min=EPS)

    def prior_kl(self, x0: Tensor) -> Tensor:
        """KL(q(x_T | x_0) ‖ p(x_T)) per sample, nats per token (constant in θ)."""
        onehot = nn.functional.one_hot(x0, self.K).permute(0, 2, 1).double()
        t = torch.full((x0.shape[0],), self.T, device=x0.device)
        q = self.q_given_x0(onehot, t)
        p = self.stationary().to(q)[None, :, None]
        return (q * ((q + EPS).log() - (p + EPS).log())).sum(1).mean(1)

    def stationary(self) -> Tensor:
        """p(x_T) (eqs. 12, 15, 18): β̄_T on each code, γ̄_T on [MASK]; (ᾱ_T = 0)."""
        return torch.cat(
            [torch.full((self.K,), float(self.beta_bar[self.T])), torch.tensor([float(self.gamma_bar[self.T])])]
        ).double()


class AdaBlock(nn.Module):
    """Self-attention, cross-attention to the text, feed-forward; each after an AdaLN of the timestep."""

    def __init__(self, dim: int, heads: int, timesteps: int, dropout: float):
        super().__init__()
        self.timestep = nn.Sequential(nn.Embedding(timesteps + 1, dim), nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim, elementwise_affine=False) for _ in range(3))
        self.attn1 = Attention(query_dim=dim, heads=heads, dim_head=dim // heads, dropout=dropout)
        self.attn2 = Attention(
            query_dim=dim, cross_attention_dim=dim, heads=heads, dim_head=dim // heads, dropout=dropout
        )
        self.ff = FeedForward(dim, dropout=dropout, activation_fn="geglu")

    def forward(self, h: Tensor, t: Tensor, text: Tensor, bias: Tensor) -> Tensor:
        s1, b1, s2, b2, s3, b3 = self.timestep(t)[:, None].chunk(6, dim=-1)
        h = h + self.attn1(self.norms[0](h) * (1 + s1) + b1)
        h = h + self.attn2(self.norms[1](h) * (1 + s2) + b2, encoder_hidden_states=text, attention_mask=bias)
        return h + self.ff(self.norms[2](h) * (1 + s3) + b3)


class TokenDenoiser(ModelMixin, ConfigMixin):
    """p_θ(x̃_0 | x_t, y): x_t [B, N] over K + 1 categories, t [B], text states → log-probabilities [B, K, N]."""

    @register_to_config
    def __init__(
        self,
        codebook_size: int = 256,
        grid: tuple[int, int] = (53, 5),
        text_dim: int = 512,
        timesteps: int = 100,
        layers: int = 19,
        heads: int = 16,
        dim: int = 1024,
        dropout: float = 0.0,
    ):
        super().__init__()
        rows, cols = grid
        self.embed = nn.Embedding(codebook_size + 1, dim)
        self.row_position = nn.Embedding(rows, dim)  # time row of the token grid
        self.column_position = nn.Embedding(cols, dim)  # frequency column
        self.text_proj = nn.Linear(text_dim, dim)
        self.blocks = nn.ModuleList(AdaBlock(dim, heads, timesteps, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, codebook_size)

    def forward(self, xt: Tensor, t: Tensor, states: Tensor, mask: Tensor) -> Tensor:
        rows, cols = self.config.grid
        positions = (self.row_position.weight[:, None] + self.column_position.weight[None]).reshape(rows * cols, -1)
        h = self.embed(xt) + positions[None, : xt.shape[1]]
        text = self.text_proj(states)
        bias = ((1.0 - mask[:, None, :]) * -10000.0).to(h.dtype)  # padded text positions: an additive bias
        for block in self.blocks:
            h = block(h, t, text, bias)
        return self.out(self.norm(h)).float().log_softmax(-1).permute(0, 2, 1)  # [B, K, N]


def dd_loss(
    model: nn.Module,
    schedule: DiscreteSchedule,
    x0: Tensor,
    states: Tensor,
    mask: Tensor,
    generator: torch.Generator,
    aux_weight: float = 1e-4,
) -> tuple[Tensor, dict[str, float]]:
    """Algorithm 1 lines 5–8: λ·L_x0 + L_vlb (eq. 23) at t ~ U{1..T}; x0 [B, N] int64."""
    batch = x0.shape[0]
    t = torch.randint(1, schedule.T + 1, (batch,), generator=generator).to(x0.device)
    xt = schedule.q_sample(x0, t, generator)
    log_x0 = model(xt, t, states, mask).float()  # [B, K, N]
    onehot = nn.functional.one_hot(x0, schedule.K).permute(0, 2, 1).to(log_x0)
    x0_nll = -(onehot * log_x0).sum(1).mean(1)  # eq. 22, per sample (nats per token)
    q = schedule.posterior(xt, onehot, t)
    p = schedule.posterior(xt, log_x0.exp(), t)
    kl = (q * ((q + EPS).log() - (p + EPS).log())).sum(1).mean(1)  # KL per sample; at t = 1: −log p(x_0)
    prior = schedule.prior_kl(x0).to(kl)
    loss = (aux_weight * x0_nll + kl + prior).mean()
    parts = {"loss_x0": x0_nll.detach().mean(), "loss_vlb": kl.detach().mean(), "prior_kl": prior.detach().mean()}
    return loss, {key: float(value) for key, value in parts.items()}


@torch.no_grad()
def sample_tokens(
    model: TokenDenoiser,
    schedule: DiscreteSchedule,
    states: Tensor,
    mask: Tensor,
    length: int,
    *,
    steps: int,
    generators: list[torch.Generator],
    guidance: float = 1.0,
    null: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Algorithm 2 with stride Δ ≈ T/steps → [B, length] code indices."""
    rows, device = len(generators), states.device
    stationary = schedule.stationary().float()
    xt = torch.stack([torch.multinomial(stationary, length, replacement=True, generator=g) for g in generators]).to(
        device
    )
    times = torch.linspace(schedule.T, 0, min(steps, schedule.T) + 1).round().long().unique_consecutive()
    guided = guidance != 1.0 and null is not None
    for t_now, t_next in zip(times[:-1].tolist(), times[1:].tolist()):
        t = torch.full((rows,), t_now, device=device)
        if guided:
            both = model(
                torch.cat([xt, xt]),
                torch.cat([t, t]),
                torch.cat([states, null[0].to(states)]),
                torch.cat([mask, null[1].to(mask)]),
            )
            cond, uncond = both[:rows], both[rows:]
            log_x0 = (uncond + guidance * (cond - uncond)).log_softmax(1)
        else:
            log_x0 = model(xt, t, states, mask)
        probs = schedule.posterior(xt, log_x0.exp().double(), t, torch.full_like(t, t_next))
        if t_next == 0:  # x_0: codes only
            probs = probs[:, : schedule.K]
        flat = probs.permute(0, 2, 1).float().cpu()
        xt = torch.stack([torch.multinomial(p, 1, generator=g).squeeze(1) for p, g in zip(flat, generators)]).to(device)
    return xt.clamp(max=schedule.K - 1)
