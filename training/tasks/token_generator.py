"""What `t2a train ar` and `t2a train dd` share: token shards in, a text-conditioned generator out.

Both read the token shards `t2a encode-tokens` wrote for the run's current codebook (their folder is keyed
by its hash), through the streaming loader (training/data/loader.py: splitting, exact resume, the
corrupt-sample policy), with the curriculum filter when data.augment.curriculum is set (Diffsound
Algorithm 3) and MBTG texts with probability `mbtg` (Diffsound §IV-C). The caption goes through the frozen
text encoder (training/models/text_features.py); with probability `cfg_dropout` it is replaced by the
features of "" (classifier-free guidance). The schedule, checkpoints, logs and resume are training/loop.py's.

Outputs (<run>/ar or <run>/dd): checkpoints/, logs/, metrics.jsonl, and model/ — self-contained for
`t2a sample`: generator/ (TokenGPT or TokenDenoiser), codebook/ (the VQModel its tokens came from),
text_encoder/ and tokenizer/, and t2a.json (kind, mel profile, token grid, codebook hash, sampling defaults).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pipelines.core.io import staged_folder
from training.config import TrainConfig
from training.data.loader import curriculum_filter, iter_batches, make_loader, require_split, token_example
from training.loop import Session, run
from training.state import TrainState

log = logging.getLogger(__name__)
SCHEMA = "t2a.model/1"
VALID_SEED = 12345  # the validation loss's noise: the same draws at every validation


def train_generator(
    config: TrainConfig,
    kind: str,
    out_dir: Path,
    build: Callable[[dict[str, Any], Any], torch.nn.Module],
    loss_fn: Callable[..., tuple[torch.Tensor, dict[str, float]]],
    extra_info: dict[str, Any],
) -> Path:
    """`build(tokens_info, text)` makes the model; `loss_fn(model, sequence, states, mask, generator)` its loss."""
    from training.models.text_features import TextFeatures, drop_text
    from training.models.vq import flatten_column_major
    from training.tasks.encode_tokens import codebook_model_dir, read_tokens_info, tokens_location

    cfg = getattr(config, kind)
    loop = cfg.train
    location = tokens_location(config)
    info = read_tokens_info(location)
    data = config.data.model_copy(
        update={
            "shards": str(location),
            "storage_options": {},
            **({"batch_size": cfg.batch_size} if cfg.batch_size else {}),
        }
    )
    require_split(data, data.valid_split, f"`t2a train {kind}` validates on data.valid_split: it")
    session = Session(config, loop, out_dir)
    text = TextFeatures.load(cfg.text.kind, cfg.text.model, cfg.text.max_tokens).to(session.device)
    model = build(info, text)
    opt, schedule = session.optimizer(model.parameters())
    ema = None
    if loop.ema_decay:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(model.parameters(), decay=loop.ema_decay)
        ema.to(session.device)
    prepared = torch.compile(model) if loop.compile else model
    prepared, opt = session.accelerator.prepare(prepared, opt)
    augment = config.data.augment
    loader = make_loader(
        data,
        data.train_split,
        token_example(cfg.mbtg),
        rank=session.rank,
        world_size=session.world_size,
        seed=config.seed,
        sample_filter=curriculum_filter(augment.curriculum.n) if augment.curriculum else None,
    )
    state = TrainState(
        models={"model": model},
        optimizers={"model": opt},
        schedulers={"model": schedule},
        ema=ema,
        config=config.model_dump(mode="json"),
    )

    def inputs(batch: dict[str, Any], drop: float, generator: torch.Generator):
        sequence = flatten_column_major(batch["tokens"]).to(session.device)
        states, mask = text(list(batch["caption"]))
        states, mask, dropped = drop_text(states, mask, text.null(len(states)), drop, generator)
        return sequence, states, mask, dropped

    def train_step(batches: list[dict[str, Any]]) -> dict[str, float]:
        logs: dict[str, float] = {}
        for batch in batches:
            sequence, states, mask, dropped = inputs(batch, cfg.cfg_dropout, session.generator)
            with session.accelerator.autocast():
                loss, parts = loss_fn(prepared, sequence, states, mask, session.generator)
            session.accelerator.backward(loss / len(batches))
            for key, value in {
                "loss": float(loss.detach()),
                **parts,
                "cfg_dropped": float(dropped.float().mean()),
            }.items():
                logs[key] = logs.get(key, 0.0) + value / len(batches)
        logs["grad_norm"] = session.clip_and_step(prepared, opt, schedule)
        if ema is not None:
            ema.step(model.parameters())
        return logs

    @torch.no_grad()
    def validate(step: int) -> dict[str, float]:
        if ema is not None:
            ema.store(model.parameters())
            ema.copy_to(model.parameters())
        model.eval()
        generator = torch.Generator().manual_seed(VALID_SEED)
        total = count = 0.0
        for batch in iter_batches(data, data.valid_split, token_example(), batch_size=data.batch_size):
            sequence, states, mask, _ = inputs(batch, 0.0, generator)
            loss, _ = loss_fn(model, sequence, states, mask, generator)
            total += float(loss) * len(sequence)
            count += len(sequence)
        model.train()
        if ema is not None:
            ema.restore(model.parameters())
        return {"valid_loss": total / count} if count else {}

    run(session, state, loader, train_step, validate=validate)
    if session.is_main:
        if ema is not None:
            ema.copy_to(model.parameters())
        meta = {
            "schema": SCHEMA,
            "kind": f"token-{kind}",
            "profile": info["profile"],
            "grid": info["grid"],
            "codebook_size": info["codebook_size"],
            "codebook_sha256": info["codebook_sha256"],
            "text": {"kind": cfg.text.kind, "max_tokens": text.max_tokens, "source": cfg.text.model},
            "guidance": cfg.guidance,
            "trained_steps": loop.steps,
            **extra_info,
        }
        save_token_model(out_dir / "model", model, codebook_model_dir(config), text, meta)
    session.accelerator.wait_for_everyone()
    session.logs.close()
    return out_dir / "model"


def save_token_model(target: Path, model, codebook_dir: Path, text, meta: dict[str, Any]) -> None:
    """generator/, codebook/, text_encoder/, tokenizer/, t2a.json, written to a temporary folder and swapped in."""
    with staged_folder(target) as temp:
        model.save_pretrained(temp / "generator", safe_serialization=True)
        shutil.copytree(codebook_dir, temp / "codebook")
        text.save(temp)
        (temp / "t2a.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
