"""The numbers of AudioLDM's Table 1 as its evaluation code (audioldm_eval) computes them.

AudioLDM §4.2: FD, IS and KL "are built upon ... PANNs", FAD over VGGish. audioldm_eval (the
pipeline AudioLDM open-sourced) computes, with backbone cnn14 at 16 kHz:
- every file: torchaudio-loaded, first channel, mean removed, resampled to 16 kHz, zero-padded at
  the end to at least 32 000 samples (2 s); one clip per forward, in eval mode;
- Cnn14 (Kong et al. 2020) at 16 kHz: window 512, hop 160, 64 mels over 50–8000 Hz, 527 AudioSet
  classes; `2048` = ReLU(fc1(·)) (the clip embedding), `logits` = fc_audioset of it;
- FD: the Fréchet distance of Gaussians fitted to the generated and the reference 2048-d embeddings;
- KL: generated and reference files paired by file name (only when ≥ 99 % of the names agree both
  ways, else not computed); softmax: Σ_pairs Σ_classes p_ref·(log p_ref − log(p_gen + 1e-6)) / pairs
  over softmax(logits); sigmoid: the same sum over sigmoid(logits) (each class's own p·log(p/q)
  term, not a Bernoulli KL);
- IS: softmax(logits) of the generated files, shuffled by numpy RandomState(2020), cut into 10
  splits; per split exp(mean_x KL(p(y|x) ‖ mean p(y))); the mean and standard deviation over splits;
- FAD (frechet_audio_distance's VGGish, harritaylor/torchvggish): the 16-kHz waveform as above →
  VGGish log-mel examples (0.96 s) → 128-d embeddings without the PCA post-processing and without
  the last ReLU; the Fréchet distance over all examples of all files.

The weights load from local files only (`Cnn14_16k_mAP=0.438.pth`, `vggish-10086976.pth`). Without a
path the networks are built with random weights (seeded): the rows are then computed exactly as the
papers' but on an untrained net, and say so (`weights: random`), comparable only with each other.
Resampling: soxr (t2a's), where audioldm_eval uses torchaudio's sinc resampler.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.annotate.encoders import ModelLoadError
from pipelines.annotate.encoders.base import torch_device
from pipelines.core.io import content_sha256
from training.evaluate.data import Clip
from training.evaluate.panns import pann_module

RATE = 16_000
MIN_SAMPLES = 32_000  # audioldm_eval pad_short_audio
CNN14_16K = dict(sample_rate=RATE, window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000, classes_num=527)
EMBEDDING, CLASSES, VGGISH_DIM = 2048, 527, 128
RANDOM_SEED = 0


def waveform(clip: Clip) -> np.ndarray:
    """audioldm_eval's WaveDataset: mono, mean removed, 16 kHz, zero-padded to at least 2 s."""
    import soxr

    from pipelines.core.features.mel import RESAMPLE_QUALITY

    audio, rate = clip.audio()
    audio = np.asarray(audio, np.float64)
    audio = audio - audio.mean() if len(audio) else audio
    if rate != RATE:
        audio = soxr.resample(audio, rate, RATE, quality=RESAMPLE_QUALITY)
    return np.pad(audio, (0, max(0, MIN_SAMPLES - len(audio)))).astype(np.float32)


def _weights_digest(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _load_state(model: torch.nn.Module, path: Path, what: str) -> None:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{what} checkpoint file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state  # PANNs wrap it in {"model": ...}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ModelLoadError(
            f"{path} is not a {what} checkpoint: {len(result.missing_keys)} weights missing (e.g. {result.missing_keys[0]})"
        )


class Cnn14Tagger:
    """Clips → (embeddings [N, 2048], logits [N, 527]) from the 16-kHz Cnn14, as audioldm_eval reads them."""

    def __init__(self, path: Path | None, device: str = "cpu"):
        torch.manual_seed(RANDOM_SEED)  # the random-weight net is the same every run
        model = pann_module().Cnn14(*CNN14_16K.values())
        if path is not None:
            _load_state(model, Path(path), "16-kHz PANNs Cnn14 (e.g. Cnn14_16k_mAP=0.438.pth)")
        self.name = "cnn14-16k"
        self.device = torch_device(device)
        self.model = model.to(self.device).eval()
        self.weights = str(path) if path is not None else f"random (seed {RANDOM_SEED})"
        sha = content_sha256(Path(path)) if path is not None else _weights_digest(model)
        self.provenance = {"model": self.weights, "sha256": sha}

    @torch.inference_mode()
    def embed_audio(self, clips: list[Clip]) -> np.ndarray:
        """[N, 2048 + 527]: the embedding and the logits side by side (one row per clip, for embed_cached)."""
        rows = []
        for clip in clips:
            wave = torch.as_tensor(waveform(clip), device=self.device)[None]
            embedding = self.model({"waveform": wave}, device=self.device)["embedding"]  # ReLU(fc1), eval: no dropout
            logits = self.model.fc_audioset(embedding)
            rows.append(torch.cat([embedding, logits], dim=1)[0].float().cpu().numpy())
        return np.stack(rows) if rows else np.zeros((0, EMBEDDING + CLASSES), np.float32)


def vggish_network() -> torch.nn.Module:
    """torchvggish's VGG (harritaylor's port of VGGish) without post-processing, its last ReLU removed
    (frechet_audio_distance's use_activation=False)."""
    from torchvggish.torchvggish import _vgg

    model = _vgg(postprocess=False)
    model.embeddings = torch.nn.Sequential(*list(model.embeddings.children())[:-1])
    return model


class VggishEmbedder:
    """Clips → VGGish embeddings [examples, 128], every 0.96-s example of every clip (FAD's input)."""

    def __init__(self, path: Path | None, device: str = "cpu"):
        torch.manual_seed(RANDOM_SEED)
        model = vggish_network()
        if path is not None:
            _load_state(model, Path(path), "VGGish (torchvggish, e.g. vggish-10086976.pth)")
        self.device = torch_device(device)
        self.model = model.to(self.device).eval()
        self.weights = str(path) if path is not None else f"random (seed {RANDOM_SEED})"
        sha = content_sha256(Path(path)) if path is not None else _weights_digest(model)
        self.provenance = {"model": self.weights, "sha256": sha}

    @torch.inference_mode()
    def examples(self, clips: list[Clip]) -> np.ndarray:
        from torchvggish.vggish_input import waveform_to_examples

        rows = []
        for clip in clips:
            examples = waveform_to_examples(waveform(clip).astype(np.float64), RATE, return_tensor=False)
            x = torch.as_tensor(np.asarray(examples), dtype=torch.float32, device=self.device)[:, None]
            if len(x):
                rows.append(self.model(x).float().cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, VGGISH_DIM), np.float32)


@functools.lru_cache(maxsize=2)
def cnn14_tagger(path: Path | None, device: str = "cpu") -> Cnn14Tagger:
    """One Cnn14Tagger per (weights, device) in a process: building the 80M-parameter net takes seconds."""
    return Cnn14Tagger(path, device)


@functools.lru_cache(maxsize=2)
def vggish_embedder(path: Path | None, device: str = "cpu") -> VggishEmbedder:
    return VggishEmbedder(path, device)


def same_name_pairs(generated: list[Clip], reference: list[Clip], threshold: float = 0.99) -> list[tuple[int, int]]:
    """audioldm_eval's pairing: (generated, reference) indices of files with the same name (stem), only
    when more than `threshold` of the names agree on both sides; else none (KL is not computed)."""
    gen = {clip.key: i for i, clip in enumerate(generated)}
    ref = {clip.key: j for j, clip in enumerate(reference)}
    common = set(gen) & set(ref)
    if not gen or not ref or len(common) / len(gen) <= threshold or len(common) / len(ref) <= threshold:
        return []
    return [(gen[name], ref[name]) for name in sorted(ref) if name in common]


def audioldm_eval_metrics(
    generated: list[Clip],
    reference: list[Clip],
    *,
    cnn14: Path | None = None,
    vggish: Path | None = None,
    device: str = "cpu",
    cache_dir: Path | None = None,
) -> tuple[dict[str, float | None], dict[str, Any]]:
    """The audioldm_eval rows (metrics) and what they were computed with (models, pairing)."""
    from training.evaluate.embedders import embed_cached
    from training.evaluate.metrics import audioldm_inception_score, audioldm_kl, embedding_fd

    tagger = cnn14_tagger(Path(cnn14) if cnn14 else None, device)
    gen = embed_cached(tagger, generated, cache_dir)
    ref = embed_cached(tagger, reference, cache_dir)
    metrics: dict[str, float | None] = {}
    metrics["audioldm_fd"] = (
        embedding_fd(gen[:, :EMBEDDING], ref[:, :EMBEDDING]) if len(gen) > 1 and len(ref) > 1 else None
    )
    pairs = same_name_pairs(generated, reference)
    if pairs:
        g, r = (np.asarray(side) for side in zip(*pairs))
        metrics.update({f"audioldm_kl_{k}": v for k, v in audioldm_kl(gen[g, EMBEDDING:], ref[r, EMBEDDING:]).items()})
    else:
        metrics.update({"audioldm_kl_softmax": None, "audioldm_kl_sigmoid": None})
    score = audioldm_inception_score(gen[:, EMBEDDING:]) if len(gen) >= 10 else None
    metrics["audioldm_is"], metrics["audioldm_is_std"] = (score["mean"], score["std"]) if score else (None, None)
    vgg = vggish_embedder(Path(vggish) if vggish else None, device)
    gen_v, ref_v = vgg.examples(generated), vgg.examples(reference)
    metrics["audioldm_fad"] = embedding_fd(gen_v, ref_v) if len(gen_v) > 1 and len(ref_v) > 1 else None
    info = {
        "cnn14": tagger.provenance,
        "vggish": vgg.provenance,
        "kl_pairs": len(pairs),
        "random_weights": [name for name, path in (("cnn14", cnn14), ("vggish", vggish)) if path is None],
    }
    return metrics, info
