"""The numbers of `t2a evaluate`, on plain arrays: Fréchet distance, KL, IS and CLAP score.

AudioLDM (§4.2, Table 1) reports FD, IS and KL; Make-An-Audio (§5.3) the CLAP
score. Nothing here loads a model: training/evaluate/embedders.py turns audio into the embeddings and
posteriors these functions take.
"""

from __future__ import annotations

import math

import numpy as np

EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS]: a saturated sigmoid must not give inf


def gaussian_stats(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, D] embeddings → (mean [D], covariance [D, D]) in float64; N ≥ 2 (a covariance needs two)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"a Fréchet distance needs at least 2 embeddings of shape [N, D], got {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """FD = |μ1 − μ2|² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½).

    Tr((Σ1Σ2)^½) is taken in the symmetric form Tr((A Σ2 A)^½) with A = Σ1^½ (both products have the
    same eigenvalues): the matrix is symmetric PSD, so an eigendecomposition suffices, tiny negative
    eigenvalues of singular estimates (N ≤ D) are clipped to 0, and no complex sqrtm result appears
    — the failure the usual eps-offset retry of scipy.linalg.sqrtm works around.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(
            f"mismatched statistics: means {mu1.shape} / {mu2.shape}, covariances {sigma1.shape} / {sigma2.shape}"
        )
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_root = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root
    return float(max(value, 0.0))  # ≥ 0 in exact arithmetic; rounding can leave -1e-12


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def embedding_fd(generated: np.ndarray, reference: np.ndarray) -> float:
    """FD between the Gaussians fitted to two embedding sets ([N, D] and [M, D]).

    With fewer samples than dimensions (N + M ≤ D: e.g. a few hundred clips of 2048-d Cnn14 embeddings)
    the same value comes from the samples: with A, B the centred sets, Σ1 = AᵀA/(N−1), Σ2 = BᵀB/(M−1),
    the eigenvalues of Σ1Σ2 are the squared singular values of ABᵀ/√((N−1)(M−1)), so Tr((Σ1Σ2)^½)
    is their sum — an N × M SVD instead of D × D eigendecompositions (exact, not an approximation).
    """
    x, y = np.asarray(generated, np.float64), np.asarray(reference, np.float64)
    if x.ndim == 2 and y.ndim == 2 and len(x) >= 2 and len(y) >= 2 and x.shape[1] == y.shape[1]:
        if len(x) + len(y) <= x.shape[1]:
            a, b = x - x.mean(axis=0), y - y.mean(axis=0)
            scale = (len(x) - 1) * (len(y) - 1)
            trace_root = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(scale)
            diff = x.mean(axis=0) - y.mean(axis=0)
            value = diff @ diff + (a * a).sum() / (len(x) - 1) + (b * b).sum() / (len(y) - 1) - 2 * trace_root
            return float(max(value, 0.0))
    return frechet_distance(*gaussian_stats(generated), *gaussian_stats(reference))


def bernoulli_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Mean over classes of KL(Bernoulli(p) || Bernoulli(q)), per row: [N, C], [N, C] → [N] (nats).

    AudioLDM's KL (§4.2) compares PANNs posteriors; for the multi-label sigmoid
    classifier here each class is an independent Bernoulli, so the per-class KLs are averaged
    (a mean, not a sum, keeps the value comparable across vocabulary sizes).
    """
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    q = np.clip(np.asarray(q, np.float64), EPS, 1 - EPS)
    kl = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    return kl.mean(axis=-1)


def paired_kl(reference: np.ndarray, generated: np.ndarray) -> float:
    """Mean over pairs of KL(reference posterior || generated posterior), the direction of
    AudioLDM's evaluation code (the reference clip's posterior is the target distribution)."""
    reference, generated = np.asarray(reference), np.asarray(generated)
    if reference.shape != generated.shape or reference.ndim != 2 or not len(reference):
        raise ValueError(
            f"KL needs paired posteriors of one shape [N ≥ 1, C], got {reference.shape} and {generated.shape}"
        )
    return float(bernoulli_kl(reference, generated).mean())


def inception_score(posteriors: np.ndarray) -> float:
    """IS = exp(E_x KL(p(y|x) || p(y))) (AudioLDM §4.2, after Salimans et al.).

    Sigmoid outputs do not sum to 1: each clip's posteriors are divided by their sum to make the
    categorical p(y|x) the formula needs; p(y) is the mean of those over the clips.
    """
    p = np.clip(np.asarray(posteriors, np.float64), EPS, None)
    if p.ndim != 2 or not len(p):
        raise ValueError(f"IS needs posteriors of shape [N ≥ 1, C], got {p.shape}")
    conditional = p / p.sum(axis=1, keepdims=True)
    marginal = conditional.mean(axis=0, keepdims=True)
    kl = (conditional * np.log(conditional / marginal)).sum(axis=1)
    return float(np.exp(kl.mean()))


def clap_score(audio: np.ndarray, text: np.ndarray) -> float:
    """Make-An-Audio's CLAP score (§5.3): the mean cosine of each clip's audio embedding
    with its own text's embedding; rows are re-normalised, so raw embeddings also work."""
    a, t = np.asarray(audio, np.float64), np.asarray(text, np.float64)
    if a.shape != t.shape or a.ndim != 2 or not len(a):
        raise ValueError(f"CLAP score needs paired embeddings of one shape [N ≥ 1, D], got {a.shape} and {t.shape}")
    a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    return float((a * t).sum(axis=1).mean())


def prompt_ranking(audio: np.ndarray, prompt_of: np.ndarray, prompts: np.ndarray) -> dict[str, float]:
    """Whether samples follow their prompts (issue "CLAP + evaluation"): each clip's CLAP audio embedding
    against every distinct prompt's text embedding. `top1`: the share of clips whose own prompt scores
    highest (chance: 1 / prompts); `rank`: the own prompt's mean rank, 1 the best (chance: (P + 1) / 2);
    `margin`: the mean of own-prompt cosine minus the mean cosine to the other prompts (0 when the audio
    ignores its prompt)."""
    a, t = np.asarray(audio, np.float64), np.asarray(prompts, np.float64)
    own = np.asarray(prompt_of, np.int64)
    if a.ndim != 2 or t.ndim != 2 or len(t) < 2 or own.shape != (len(a),) or not len(a):
        raise ValueError(
            f"prompt ranking needs clips [N ≥ 1, D], ≥ 2 prompts [P, D] and one prompt index per clip; got {a.shape}, {t.shape}, {own.shape}"
        )
    a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    cosine = a @ t.T  # [N, P]
    mine = cosine[np.arange(len(a)), own]
    others = (cosine.sum(axis=1) - mine) / (len(t) - 1)
    rank = 1 + (cosine > mine[:, None]).sum(axis=1)  # ties count in the clip's favour
    return {
        "top1": float((cosine.argmax(axis=1) == own).mean()),
        "top1_chance": 1.0 / len(t),
        "rank": float(rank.mean()),
        "rank_chance": (len(t) + 1) / 2,
        "rank_p": rank_p_value(int(rank.sum()), len(a), len(t)),
        "margin": float((mine - others).mean()),
    }


def rank_p_value(rank_sum: int, clips: int, prompts: int) -> float:
    """One-sided p-value of a rank sum this low when samples ignore their prompts: under that null
    each clip's own-prompt rank is uniform on 1..P and independent, so the sum is the sum of `clips`
    discrete uniforms. Exact (repeated convolution) up to 200 000 support points, else the normal
    approximation with a continuity correction."""
    n, p = clips, prompts
    if n * (p - 1) <= 200_000:
        dist = np.ones(1)
        for _ in range(n):
            dist = np.convolve(dist, np.full(p, 1.0 / p))
        return float(min(1.0, dist[: rank_sum - n + 1].sum()))  # P(sum ≤ rank_sum); the support starts at n
    mean, sd = n * (p + 1) / 2, math.sqrt(n * (p * p - 1) / 12)
    return float(0.5 * math.erfc(-(rank_sum + 0.5 - mean) / (sd * math.sqrt(2))))


def per_prompt_ranking(audio: np.ndarray, prompt_of: np.ndarray, prompts: np.ndarray) -> list[dict[str, float]]:
    """prompt_ranking's figures for each prompt's own clips: [{clips, own, others, rank}] in prompt order
    (`own`/`others`: mean cosine to the prompt / to the other prompts; prompts without clips are left out)."""
    a, t = np.asarray(audio, np.float64), np.asarray(prompts, np.float64)
    a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    own = np.asarray(prompt_of, np.int64)
    out = []
    for p in range(len(t)):
        cosine = a[own == p] @ t.T  # [n_p, P]
        if not len(cosine):
            continue
        mine = cosine[:, p]
        others = (cosine.sum(axis=1) - mine) / max(len(t) - 1, 1)
        rank = 1 + (cosine > mine[:, None]).sum(axis=1)
        out.append(
            {
                "prompt": p,
                "clips": len(cosine),
                "own": float(mine.mean()),
                "others": float(others.mean()),
                "rank": float(rank.mean()),
            }
        )
    return out


# --- audioldm_eval's formulas (training/evaluate/audioldm_eval.py), on logits --------------------------

AUDIOLDM_EPS = 1e-6  # audioldm_eval metrics/kl.py: log(q + 1e-6)


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def _plogp_over_q(p: np.ndarray, q: np.ndarray) -> float:
    """Σ p·(log p − log(q + eps)), with 0·log 0 = 0 (torch.nn.functional.kl_div's xlogy)."""
    safe = np.where(p > 0, p, 1.0)
    return float(np.sum(np.where(p > 0, p * (np.log(safe) - np.log(q + AUDIOLDM_EPS)), 0.0)))


def audioldm_kl(generated_logits: np.ndarray, reference_logits: np.ndarray) -> dict[str, float]:
    """audioldm_eval's KL over paired logits [N, C] (row i of each side is one pair): `softmax` (AudioGen's
    and AudioLDM's Table 1 KL) and `sigmoid`, each the sum over pairs and classes divided by the pairs."""
    g, r = np.asarray(generated_logits, np.float64), np.asarray(reference_logits, np.float64)
    if g.shape != r.shape or g.ndim != 2 or not len(g):
        raise ValueError(f"KL needs paired logits of one shape [N ≥ 1, C], got {g.shape} and {r.shape}")
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    return {
        "softmax": _plogp_over_q(_softmax(r), _softmax(g)) / len(g),
        "sigmoid": _plogp_over_q(sigmoid(r), sigmoid(g)) / len(g),
    }


def audioldm_inception_score(logits: np.ndarray, splits: int = 10, seed: int = 2020) -> dict[str, float]:
    """audioldm_eval's IS: softmax of the logits, rows shuffled by RandomState(seed), `splits` chunks
    [i·N // splits, (i + 1)·N // splits); per chunk exp(mean KL(p(y|x) ‖ chunk mean)); mean and std."""
    x = np.asarray(logits, np.float64)
    if x.ndim != 2 or len(x) < splits:
        raise ValueError(f"IS needs logits [N ≥ {splits}, C] for {splits} splits, got {x.shape}")
    n = len(x)
    x = x[np.random.RandomState(seed).permutation(n)]
    shifted = x - x.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        chunk, log_chunk = p[i * n // splits : (i + 1) * n // splits], log_p[i * n // splits : (i + 1) * n // splits]
        q = chunk.mean(axis=0, keepdims=True)
        scores.append(float(np.exp((chunk * (log_chunk - np.log(q))).sum(axis=1).mean())))
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores))}
