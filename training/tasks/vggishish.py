"""`t2a train vggishish`: the VGGish-ish mel classifier (training/models/vggishish.py) on the corpus labels.

Li et al. 2023 §2.1 takes its codebook's perceptual term from "VGGish-ish [4] trained on AudioSet"; here it
is trained on the corpus the codebook trains on: a sigmoid per label name of the train split (the split
index's label counts give the vocabulary), binary cross-entropy, on crops of the configured mel profile.
Outputs (<run>/vggishish/): checkpoints/, logs/, metrics.jsonl (loss, valid_loss, valid_accuracy: the share
of clips whose top-scoring label is one of theirs) and model/ (config.json with the label names, weights),
which `codebook.loss.perceptual` names.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import torch
import torch.nn.functional as F

from pipelines.core.config import ConfigError
from pipelines.core.features import get_profile
from pipelines.shard import contract
from training.config import TrainConfig
from training.data.examples import MelExample
from training.data.loader import iter_batches, make_loader, require_split
from training.loop import Session, command, run, save_model_atomic
from training.state import TrainState

log = logging.getLogger(__name__)


def label_vocabulary(data, split: str) -> list[str]:
    """The label names of a split, sorted, from its index (`t2a shard` counts them per split)."""
    url = f"{data.shards.rstrip('/')}/{split}/{contract.INDEX_NAME}"
    try:
        with fsspec.open(url, "rb", **data.storage_options) as stream:
            totals = contract.decode_json(stream.read()).get("totals", {})
    except FileNotFoundError:
        raise FileNotFoundError(f"{url} not found: data.shards must point at a corpus written by `t2a shard`") from None
    names = sorted(totals.get("labels", {}))
    if not names:
        raise ConfigError(f"{url}: the {split} split has no labels; the VGGish-ish classifier trains on labels")
    return names


class LabelledMel(MelExample):
    """A mel example with a multi-hot `labels` vector over the vocabulary."""

    def __init__(self, profile: str, crop_frames: int | None, random_crop: bool, vocabulary: list[str]):
        super().__init__(profile, crop_frames, random_crop)
        self.index = {name: i for i, name in enumerate(vocabulary)}

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        example = super().__call__(sample, rng)
        hot = np.zeros(len(self.index), np.float32)
        for label in sample[contract.JSON].get("labels") or []:
            if label.get("name") in self.index:
                hot[self.index[label["name"]]] = 1.0
        return {**example, "labels": hot}


def train(config: TrainConfig) -> Path:
    from training.models.vggishish import Vggishish

    cfg, data = config.vggishish, config.data
    loop = cfg.train
    require_split(data, data.valid_split, "`t2a train vggishish` validates on data.valid_split: it")
    vocabulary = label_vocabulary(data, data.train_split)
    session = Session(config, loop, config.vggishish_dir)
    profile = get_profile(data.profile)
    crop = cfg.crop_frames or data.crop_frames
    model = Vggishish(channels=tuple(cfg.channels), labels=tuple(vocabulary))
    opt, schedule = session.optimizer(model.parameters())
    prepared, opt = session.accelerator.prepare(model, opt)
    loader = make_loader(
        data,
        data.train_split,
        LabelledMel(profile.name, crop, True, vocabulary),
        rank=session.rank,
        world_size=session.world_size,
        seed=config.seed,
    )
    state = TrainState(
        models={"model": model},
        optimizers={"model": opt},
        schedulers={"model": schedule},
        config=config.model_dump(mode="json"),
    )

    def train_step(batches: list[dict[str, Any]]) -> dict[str, float]:
        total = 0.0
        for batch in batches:
            mel, target = batch["mel"].to(session.device), batch["labels"].to(session.device)
            with session.accelerator.autocast():
                loss = F.binary_cross_entropy_with_logits(prepared(mel).float(), target)
            session.accelerator.backward(loss / len(batches))
            total += float(loss.detach()) / len(batches)
        return {"loss": total, "grad_norm": session.clip_and_step(prepared, opt, schedule)}

    @torch.no_grad()
    def validate(step: int) -> dict[str, float]:
        model.eval()
        example = LabelledMel(profile.name, crop, False, vocabulary)
        loss = hits = count = 0.0
        for batch in iter_batches(data, data.valid_split, example, batch_size=data.batch_size):
            logits = model(batch["mel"].to(session.device)).float()
            target = batch["labels"].to(session.device)
            loss += float(F.binary_cross_entropy_with_logits(logits, target, reduction="sum")) / target.shape[1]
            hits += float(target.gather(1, logits.argmax(1, keepdim=True)).sum())
            count += len(target)
        model.train()
        return {"valid_loss": loss / count, "valid_accuracy": hits / count} if count else {}

    run(session, state, loader, train_step, validate=validate)
    if session.is_main:
        save_model_atomic(model, config.vggishish_dir / "model")
    session.accelerator.wait_for_everyone()
    session.logs.close()
    return config.vggishish_dir / "model"


if __name__ == "__main__":  # `python -m training.tasks.vggishish --config …`
    command(__doc__, train)
