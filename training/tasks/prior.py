"""`t2a train prior`: CLIPSonic-SD's diffusion prior, trained from scratch on the corpus (CLIPSonic §2).

The pairs are the ones the paper builds from its datasets' labels (§3 "Data", App.): each training clip's
labels as "a photo of [label]" (pipelines.annotate.prompts.labels.photo_prompt) through the CLIP text
tower of `ldm.encoders.clip`, against the CLIP image embedding of one of the clip's frames (the annotate
stage's clip_image, the same embeddings the audio model is conditioned on); each step draws one label
and one frame per clip from the run's generator. training/models/prior.py has the model and its loss.

Outputs (<run>/prior/): checkpoints/, logs/, metrics.jsonl, model/ (the EMA prior, for
`t2a sample --query text-prior --prior <run>/prior/model`) and gap.json: CLIPSonic Table 2's modality-gap
figure on data.valid_split — the mean cosine between the query embedding (the raw CLIP text embedding,
text-zs; the prior's output, text-prior) and the clip's ground-truth CLIP image (frame) embeddings.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.shard import contract
from training.config import TrainConfig
from training.data.loader import iter_batches, make_loader, require_split
from training.loop import Session, command, run, save_model_atomic
from training.state import TrainState

log = logging.getLogger(__name__)
GAP = "gap.json"


class PriorExample:
    """A shard sample → {"key", "prompts": ["a photo of [label]", ...], "clip_image": [frames, D]};
    None (skipped) for a clip without labels or without frame embeddings."""

    def wants(self, member: str) -> bool:
        return member in (contract.JSON, contract.embedding_member("clip_image"))

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict | None:
        from pipelines.annotate.prompts.labels import distinct_names, photo_prompt

        frames = sample.get(contract.embedding_member("clip_image"))
        names = distinct_names([label["name"] for label in sample[contract.JSON].get("labels") or []])
        if frames is None or not len(frames) or not names:
            return None
        return {
            "key": sample["__key__"],
            "prompts": [photo_prompt(n) for n in names],
            "clip_image": np.asarray(frames, np.float32),
        }


def train(config: TrainConfig) -> Path:
    from diffusers.training_utils import EMAModel

    from training.models.conditioning import ClipImage
    from training.models.prior import DiffusionPrior, prior_loss

    cfg, loop = config.prior, config.prior.train
    session = Session(config, loop, config.prior_dir)
    require_split(
        config.data, config.data.valid_split, "`t2a train prior` measures the modality gap on data.valid_split: it"
    )
    text_tower = ClipImage.from_encoders(config.ldm.encoders, session.device)
    prior = DiffusionPrior(
        dim=text_tower.dim,
        width=cfg.width,
        layers=cfg.layers,
        heads=cfg.heads,
        num_train_timesteps=cfg.num_train_timesteps,
        sample_steps=cfg.sample_steps,
        candidates=cfg.candidates,
    ).to(session.device)
    scheduler = prior.scheduler()
    opt, schedule = session.optimizer(prior.parameters())
    ema = EMAModel(prior.parameters(), decay=loop.ema_decay) if loop.ema_decay else None
    model, opt = session.accelerator.prepare(prior, opt)
    if ema is not None:
        ema.to(session.device)
    loader = make_loader(
        config.data,
        config.data.train_split,
        PriorExample(),
        rank=session.rank,
        world_size=session.world_size,
        seed=config.seed,
        batch_size=cfg.batch_size,
    )
    state = TrainState(
        models={"model": prior},
        optimizers={"model": opt},
        schedulers={"model": schedule},
        ema=ema,
        config=config.model_dump(mode="json"),
    )

    def train_step(batches: list[dict[str, Any]]) -> dict[str, float]:
        total = 0.0
        for batch in batches:
            text, image = pairs(text_tower, batch, session.generator)
            with session.accelerator.autocast():
                loss = prior_loss(model, scheduler, text, image, session.generator, cfg.cfg_dropout)
            session.accelerator.backward(loss / len(batches))
            total += float(loss.detach()) / len(batches)
        grad_norm = session.clip_and_step(model, opt, schedule)
        if ema is not None:
            ema.step(prior.parameters())
        return {"loss": total, "grad_norm": grad_norm}

    def validate(step: int) -> dict[str, float]:
        if ema is not None:
            ema.store(prior.parameters())
            ema.copy_to(prior.parameters())
        prior.eval()
        gap = modality_gap(text_tower, prior, config.data, config.data.valid_split, config.seed)
        prior.train()
        if ema is not None:
            ema.restore(prior.parameters())
        if not gap["clips"]:
            return {}
        return {"valid_cos_text": gap["text-zs"], "valid_cos_prior": gap["text-prior"]}

    run(session, state, loader, train_step, validate=validate)
    out = config.prior_dir / "model"
    if session.is_main:
        if ema is not None:
            ema.copy_to(prior.parameters())
        prior.eval()
        save_model_atomic(prior, out)
        split = cfg.gap_split or config.data.valid_split
        gap = modality_gap(text_tower, prior, config.data, split, config.seed)
        (config.prior_dir / GAP).write_text(json.dumps({"split": split, **gap}, indent=2) + "\n")
        log.info("prior saved to %s; modality gap (mean cosine to the frames): %s", out, gap)
    session.accelerator.wait_for_everyone()
    session.logs.close()
    return out


def pairs(text_tower, batch: dict[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(CLIP text embeddings, CLIP frame embeddings) [B, D], one label prompt and one frame drawn per clip."""
    prompts, frames = batch["prompts"], batch["clip_image"]
    frames = list(frames) if isinstance(frames, (list, tuple)) else list(torch.as_tensor(frames))
    draws = torch.rand(len(prompts), 2, generator=generator)
    texts = [p[min(int(u * len(p)), len(p) - 1)] for p, u in zip(prompts, draws[:, 0])]
    images = torch.stack([f[min(int(u * len(f)), len(f) - 1)] for f, u in zip(frames, draws[:, 1])])
    text = text_tower.from_prompts(texts)[:, 0]
    return text, F.normalize(images.float(), dim=-1).to(text.device)


@torch.no_grad()
def modality_gap(text_tower, prior, data, split: str, seed: int = 0) -> dict[str, float]:
    """CLIPSonic Table 2: mean over the split's (clip, label prompt, frame) triples of cos(query, q_img),
    the query being the prompt's CLIP text embedding (text-zs) or the prior's image embedding for it."""
    sums, count, clips = {"text-zs": 0.0, "text-prior": 0.0}, 0, 0
    for batch in iter_batches(data, split, PriorExample(), batch_size=data.batch_size):
        for prompts, frames in zip(batch["prompts"], batch["clip_image"]):
            images = F.normalize(torch.as_tensor(frames).float(), dim=-1).to(text_tower.device)
            text = text_tower.from_prompts(list(prompts))[:, 0]
            queries = {"text-zs": text}
            if prior is not None:
                queries["text-prior"] = prior.generate(text.to(prior.device), seed=seed).to(text.device)
            for mode, query in queries.items():
                sums[mode] += float((query @ images.T).sum())
            count += len(prompts) * len(images)
            clips += 1
    if not count:  # a diagnostic, not the model: said, recorded, and training goes on
        note = f"split {split!r} has no clip with labels and CLIP frame embeddings: no modality gap measured"
        log.warning(note)
        return {"clips": 0, "note": note}
    gap = {mode: total / count for mode, total in sums.items() if prior is not None or mode == "text-zs"}
    return {**gap, "clips": clips}


if __name__ == "__main__":  # `python -m training.tasks.prior --config …`
    command(__doc__, train)
