"""The models behind `t2a evaluate`: audio embedders by name (EMBEDDERS), an embedding cache keyed
by file sha256, and LabelClassifier, the multi-label probe whose posteriors give KL and IS.

AudioLDM (§4.2) takes KL and IS from a PANNs tagger; Li et al. 2023 §3.1 (MMKL) from a
multi-label sigmoid classifier. Here the classifier is an MLP on the CLAP audio embedding, trained
on the corpus labels: cheap to train, and it shares the CLAP pass FD and the CLAP score need.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipelines.annotate.encoders import ClapConfig, audio_windows, load_clap, pool_windows
from pipelines.core.registry import Registry
from training.evaluate.data import Clip, reference_clips

log = logging.getLogger(__name__)
CLASSIFIER_JSON = "classifier.json"
CLASSIFIER_WEIGHTS = "model.safetensors"


def trained_window(folder: Path) -> float:
    """The window a transformers CLAP folder was trained on (its feature extractor's max_length_s),
    so evaluation embeds clips as the model saw them in training (`t2a train clap` saves it)."""
    import transformers

    try:
        extractor = transformers.ClapFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError):
        return 10.0  # load_clap then names what is missing
    return extractor.nb_max_samples / extractor.sampling_rate


class ClapEmbedder:
    """A CLAP model as an embedder: clips → pooled audio embeddings [N, D]; texts → [N, D]."""

    def __init__(self, folder: Path, device: str, window_batch: int = 16):
        self.name = "clap"
        self.encoder = load_clap(
            ClapConfig(model=str(Path(folder).absolute()), window_seconds=trained_window(folder)), device
        )
        self.provenance = {"model": str(folder), "sha256": self.encoder.provenance["sha256"]}
        self.window_batch = window_batch

    def embed_audio(self, clips: list[Clip]) -> np.ndarray:
        """Each clip → its deterministic 48 kHz windows (pipelines.annotate.encoders.audio_windows); the
        windows of all clips go through the model in batches, then are mean-pooled per clip."""
        if not clips:
            return np.zeros((0, self.encoder.dim), np.float32)
        rate, size = self.encoder.sample_rate, self.encoder.window_samples
        windows = [audio_windows(*clip.audio(), rate, size) for clip in clips]  # [n_i, window_samples] each
        stacked = np.concatenate(windows)
        embedded = np.concatenate(
            [
                self.encoder.embed_audio(stacked[s : s + self.window_batch])
                for s in range(0, len(stacked), self.window_batch)
            ]
        )
        bounds = np.cumsum([0] + [len(w) for w in windows])
        return np.stack([pool_windows(embedded[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])  # [N, dim]

    def embed_text(self, texts: list[str]) -> np.ndarray:
        return self.encoder.embed_text(texts)


def _panns(path: Path, device: str) -> Any:
    from training.evaluate.panns import PannsEmbedder  # laion_clap's model code loads only when asked for

    return PannsEmbedder(path, device)


# name → (model path, device) → embedder; the FD over an embedder's outputs is reported as fd_<name>.
EMBEDDERS: Registry[Callable[[Path, str], Any]] = Registry("embedding model")
EMBEDDERS.register("clap")(ClapEmbedder)
EMBEDDERS.register("panns")(_panns)


def embed_cached(embedder: Any, clips: list[Clip], cache_dir: Path | None, batch: int = 16) -> np.ndarray:
    """[N, D] embeddings; with a cache_dir, one npy per clip under <embedder>-<model sha[:16]>/<clip sha256>.npy,
    so a clip met again (same bytes, same model) is not embedded again."""
    folder = Path(cache_dir) / f"{embedder.name}-{embedder.provenance['sha256'][:16]}" if cache_dir else None
    found: dict[int, np.ndarray] = {}
    if folder is not None:
        for i, clip in enumerate(clips):
            path = folder / f"{clip.sha256}.npy"
            if path.is_file():
                found[i] = np.load(path)
    missing = [i for i in range(len(clips)) if i not in found]
    for start in range(0, len(missing), batch):
        chunk = missing[start : start + batch]
        for i, row in zip(chunk, embedder.embed_audio([clips[i] for i in chunk])):
            found[i] = row
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                _save_npy(folder / f"{clips[i].sha256}.npy", row)
    return np.stack([found[i] for i in range(len(clips))]) if clips else np.zeros((0, 0), np.float32)


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, np.asarray(array, np.float32))
    tmp.replace(path)  # a reader never sees half an array


class LabelClassifier(nn.Module):
    """embedding [B, D] → label logits [B, C]: a one-hidden-layer MLP probe, sigmoid per label."""

    def __init__(self, vocabulary: list[str], dim: int, hidden: int = 128, clap_sha256: str = ""):
        super().__init__()
        self.vocabulary, self.dim, self.hidden, self.clap_sha256 = list(vocabulary), dim, hidden, clap_sha256
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, len(vocabulary)))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.net(embeddings)

    @torch.inference_mode()
    def posteriors(self, embeddings: np.ndarray) -> np.ndarray:
        """float [N, D] → float64 [N, C] sigmoid posteriors."""
        weight = self.net[0].weight
        x = torch.as_tensor(np.asarray(embeddings, np.float32), device=weight.device)
        return torch.sigmoid(self(x)).double().cpu().numpy()

    def save(self, folder: Path, extra: dict[str, Any] | None = None) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, folder / CLASSIFIER_WEIGHTS)
        settings = {
            "vocabulary": self.vocabulary,
            "dim": self.dim,
            "hidden": self.hidden,
            "clap_sha256": self.clap_sha256,
            **(extra or {}),
        }
        (folder / CLASSIFIER_JSON).write_text(json.dumps(settings, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> LabelClassifier:
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / CLASSIFIER_JSON).is_file() or not (folder / CLASSIFIER_WEIGHTS).is_file():
            raise FileNotFoundError(
                f"{folder} holds no label classifier ({CLASSIFIER_JSON} + {CLASSIFIER_WEIGHTS}); train one with train_label_classifier"
            )
        settings = json.loads((folder / CLASSIFIER_JSON).read_text())
        model = cls(settings["vocabulary"], settings["dim"], settings["hidden"], settings.get("clap_sha256", ""))
        model.load_state_dict(load_file(folder / CLASSIFIER_WEIGHTS))
        return model.to(device).eval()


def label_targets(clips: Iterable[Clip], vocabulary: list[str]) -> np.ndarray:
    """Multi-hot [N, C]; labels outside the vocabulary are ignored."""
    index = {name: c for c, name in enumerate(vocabulary)}
    clips = list(clips)
    targets = np.zeros((len(clips), len(vocabulary)), np.float32)
    for i, clip in enumerate(clips):
        for name in clip.labels:
            if name in index:
                targets[i, index[name]] = 1.0
    return targets


def train_label_classifier(
    shards_location: Path,
    clap_folder: Path,
    out_dir: Path,
    epochs: int = 200,
    seed: int = 0,
    *,
    device: str = "cpu",
    lr: float = 1e-3,
    hidden: int = 128,
    cache_dir: Path | None = None,
) -> Path:
    """Train the probe with BCE on the train split's labels (vocabulary: label names seen in train),
    full batch (the inputs are small embeddings); writes out_dir/{model.safetensors, classifier.json}."""
    clips = [clip for clip in reference_clips(shards_location, "train") if clip.labels]
    if not clips:
        raise ValueError(
            f"{shards_location}: the train split has no samples with audio and labels to train a classifier on"
        )
    vocabulary = sorted({name for clip in clips for name in clip.labels})
    embedder = ClapEmbedder(clap_folder, device)
    x = torch.as_tensor(embed_cached(embedder, clips, cache_dir), device=device)
    y = torch.as_tensor(label_targets(clips, vocabulary), device=device)
    torch.manual_seed(seed)
    model = LabelClassifier(vocabulary, x.shape[1], hidden, embedder.provenance["sha256"]).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    log.info(
        "label classifier: %d clips, %d labels, BCE %.4f → %.4f", len(clips), len(vocabulary), losses[0], losses[-1]
    )
    history = {"clips": len(clips), "epochs": epochs, "seed": seed, "loss_first": losses[0], "loss_last": losses[-1]}
    return model.eval().save(out_dir, {"train": history})
