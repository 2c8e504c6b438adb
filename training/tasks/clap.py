"""`t2a train clap`: contrastive language–audio pre-training of a transformers ClapModel on the corpus.

Each example is a fixed window of a shard's 48 kHz FLAC (short clips repeated and zero-padded, as
LAION-CLAP's "repeatpad"; longer ones randomly cropped from the example's generator) paired with
its caption (training.data.examples.caption_of). The loss is AudioLDM's (App. A
eq. 12–14): symmetric cross-entropy over the audio→text and text→audio similarity logits of a
batch, with CLAP's two learnable temperatures (logit_scale_a, logit_scale_t).

Why not `ClapModel(return_loss=True)`: in transformers 5 (models/clap/modeling_clap.py) its
second term is `contrastive_loss(logits_per_audio.t())`, and logits_per_audio.t() is text-by-audio,
so both terms normalise over the audios (text→audio twice) and eq. 13's audio→text term is missing.
`contrastive_loss` below has both directions.

Outputs (<run>/clap/): checkpoints/, logs/, metrics.jsonl, recall.json (Recall@1/5/10 both ways on
the validation split) and model/ (ClapModel + ClapProcessor files), which annotate's transformers
backend loads: `annotate.clap: {backend: transformers, model: <run>/clap/model, window_seconds: …}`.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from pipelines.annotate.encoders.base import CLAP_RATE, audio_windows, check_tokenizer, l2_normalise
from pipelines.core.features.mel import RESAMPLE_QUALITY
from pipelines.shard import contract
from training.config import ClapTrainConfig, TrainConfig
from training.data.examples import caption_of
from training.data.loader import iter_batches, make_loader, require_split
from training.loop import Session, add_mean, command, run, save_model_atomic
from training.state import TrainState

log = logging.getLogger(__name__)
KS = (1, 5, 10)


def clap_window(audio: np.ndarray, rate: int, window: int, rng: np.random.Generator) -> np.ndarray:
    """Mono audio → float32 [window] at 48 kHz: repeat-padded when short, a random crop when long."""
    if rate != CLAP_RATE:
        import soxr

        audio = soxr.resample(audio, rate, CLAP_RATE, quality=RESAMPLE_QUALITY)
    if len(audio) <= window:
        return audio_windows(audio, CLAP_RATE, CLAP_RATE, window)[0]  # LAION-CLAP's "repeatpad"
    start = int(rng.integers(0, len(audio) - window + 1))
    return np.ascontiguousarray(audio[start : start + window], dtype=np.float32)


def clap_features(extractor, waves: Sequence[np.ndarray], window: int) -> torch.Tensor:
    """[B, window] 48 kHz waves → CLAP log-mel input features [B, 1, T, 64].

    Inputs are exactly max_length long, so "rand_trunc" never crops and "repeatpad" never pads:
    the features are a deterministic function of the wave.
    """
    out = extractor(
        list(waves),
        sampling_rate=CLAP_RATE,
        max_length=window,
        truncation="rand_trunc",
        padding="repeatpad",
        return_tensors="pt",
    )
    return out["input_features"]


class ClapExample:
    """A shard sample → {"key", "caption", "input_features" [1, T, 64]} (extractor given) or {…, "wave" [window]}."""

    def __init__(self, window: int, extractor=None):
        self.window, self.extractor = window, extractor

    def wants(self, member: str) -> bool:
        return member in (contract.JSON, contract.AUDIO)

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        caption = caption_of(sample[contract.JSON])
        if not caption:
            raise ValueError("no caption: neither selected_caption, a human caption nor label text")
        if contract.AUDIO not in sample:
            raise ValueError("no flac member: CLAP trains on shards written with audio")
        audio, rate = sf.read(io.BytesIO(sample[contract.AUDIO]), dtype="float32", always_2d=True)
        wave = clap_window(audio.mean(axis=1), rate, self.window, rng)
        if self.extractor is None:
            return {"key": sample["__key__"], "caption": caption, "wave": torch.from_numpy(wave)}
        return {
            "key": sample["__key__"],
            "caption": caption,
            "input_features": clap_features(self.extractor, [wave], self.window)[0],
        }


def contrastive_loss(logits_per_audio: torch.Tensor, logits_per_text: torch.Tensor) -> torch.Tensor:
    """AudioLDM App. A eq. 12: L = -(1/2D) Σ_i (l1 + l2), pairs on the diagonal.

    logits_per_audio [D, D] = E^x·E^y/τ_a (row i: audio i against every text, eq. 13's softmax);
    logits_per_text [D, D] = E^y·E^x/τ_t (row i: text i against every audio, eq. 14). The paper
    writes l1, l2 as log-probabilities and L as their mean; minimised is its negative.
    """
    labels = torch.arange(len(logits_per_audio), device=logits_per_audio.device)
    l1 = torch.nn.functional.cross_entropy(logits_per_audio, labels)  # eq. 13, already -mean
    l2 = torch.nn.functional.cross_entropy(logits_per_text, labels)  # eq. 14
    return (l1 + l2) / 2


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of `x`, in rank order (LAION-CLAP's gather_features): under DDP the softmax
    of eq. 13–14 then runs over the global batch, world × B negatives, as in one process.

    Only this rank's rows carry a gradient, and it is scaled by the world size: summed over ranks
    (DDP averages, hence the scale) the embeddings' gradients are the one-process gradient, while
    whatever else the loss uses (the temperatures) sees every row and needs no scaling. One
    process: `x` itself."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    world = dist.get_world_size()
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x * world - x.detach() * (world - 1)  # the value of x, its gradient × world
    return torch.cat(parts)


def global_contrastive_loss(
    audio: torch.Tensor, text: torch.Tensor, scale_a: torch.Tensor, scale_t: torch.Tensor
) -> torch.Tensor:
    """contrastive_loss over the global batch of L2-normalised embeddings [B, D] (ClapModel's
    audio_embeds and text_embeds) with the log temperatures logit_scale_a / logit_scale_t; after
    DDP's gradient averaging every parameter gets the one-process gradient (gather_rows)."""
    audio, text = gather_rows(audio), gather_rows(text)
    return contrastive_loss(audio @ text.T * scale_a.exp(), text @ audio.T * scale_t.exp())


def recall_at_k(
    audio_emb, text_emb, ks: Sequence[int] = KS, *, groups: Sequence[Any] | None = None
) -> dict[str, float]:
    """Recall@k both ways for N (audio i, text i) pairs: {"t2a@k", "a2t@k"} in [0, 1].

    A query is a hit when a matching item is among its k most similar (cosine; ties go to the
    lower index). Items match when they are the same pair, or share a group (`groups[i]`, e.g. the
    caption: clips that share a caption all answer it).
    """
    audio = torch.as_tensor(l2_normalise(audio_emb))
    text = torch.as_tensor(l2_normalise(text_emb))
    if audio.shape != text.shape or audio.ndim != 2:
        raise ValueError(
            f"recall_at_k: needs [N, D] audio and text embeddings of one shape, got {tuple(audio.shape)} and {tuple(text.shape)}"
        )
    labels = list(range(len(audio))) if groups is None else list(groups)
    ids = {label: i for i, label in enumerate(dict.fromkeys(labels))}
    group = torch.tensor([ids[label] for label in labels])
    match = group[:, None] == group[None, :]  # [N, N]
    similarity = text @ audio.T  # [texts, audios]
    out = {}
    for name, sims in (("t2a", similarity), ("a2t", similarity.T)):
        order = torch.sort(-sims, dim=1, stable=True).indices  # most similar first
        hits = torch.gather(match, 1, order)
        for k in ks:
            out[f"{name}@{k}"] = float(hits[:, :k].any(dim=1).float().mean())
    return out


def load_clap_model(clap: ClapTrainConfig):
    """(ClapModel, ClapProcessor, window samples): the `init` folder, or a new model of `config` (tiny by default)."""
    import transformers

    if clap.init:
        try:
            model = transformers.ClapModel.from_pretrained(clap.init, local_files_only=True)
            processor = transformers.ClapProcessor.from_pretrained(clap.init, local_files_only=True)
        except (OSError, ValueError) as error:
            raise ValueError(f"clap.init: cannot load a ClapModel + ClapProcessor from {clap.init}: {error}") from None
    else:
        from training.models.clap import roberta_tokenizer, tiny_clap_config

        tokenizer = roberta_tokenizer()
        config = _clap_config(tiny_clap_config(len(tokenizer)), clap.config or {})
        check_tokenizer(tokenizer, config.text_config.vocab_size, "clap.config text_config.vocab_size")
        model = transformers.ClapModel(config)
        extractor = transformers.ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad")  # 48 kHz, 64 mels
        processor = transformers.ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer)
    extractor = processor.feature_extractor
    if clap.window_seconds is not None:
        # Saved with the export, so annotate's window_seconds check (clap_transformers.py) agrees.
        extractor.max_length_s = (
            int(clap.window_seconds) if float(clap.window_seconds).is_integer() else clap.window_seconds
        )
        extractor.nb_max_samples = round(clap.window_seconds * CLAP_RATE)
    return model, processor, int(extractor.nb_max_samples)


def _clap_config(base, overrides: dict[str, Any]):
    """`base` (a transformers.ClapConfig) with `overrides`: text_config / audio_config merged key by key."""
    import transformers

    values = {key: base.to_dict()[key] for key in ("text_config", "audio_config", "projection_dim")}
    for key, value in overrides.items():
        values[key] = (
            {**values[key], **value} if key.endswith("_config") and isinstance(value, dict) and key in values else value
        )
    try:
        return transformers.ClapConfig(**values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"clap.config: not a valid transformers ClapConfig: {error}") from None


def max_tokens(model, tokenizer) -> int:
    text = model.config.text_config
    offset = (
        0 if text.pad_token_id is None else text.pad_token_id + 1
    )  # RoBERTa positions start after the padding index
    return min(tokenizer.model_max_length, text.max_position_embeddings - offset)


def train(config: TrainConfig) -> Path:
    from diffusers.training_utils import EMAModel

    clap, loop = config.clap, config.clap.train
    require_split(config.clap_data, config.data.valid_split, "`t2a train clap` measures recall on data.valid_split: it")
    session = Session(config, loop, config.clap_dir)
    clap_model, processor, window = load_clap_model(clap)
    session.configure(clap_model.train())
    tokenizer, extractor, tokens_max = (
        processor.tokenizer,
        processor.feature_extractor,
        max_tokens(clap_model, processor.tokenizer),
    )
    ema = EMAModel(clap_model.parameters(), decay=loop.ema_decay) if loop.ema_decay else None
    opt, schedule = session.optimizer(clap_model.parameters())
    model, opt = session.accelerator.prepare(clap_model, opt)
    if ema is not None:
        ema.to(session.device)
    example = ClapExample(window, extractor if clap.features == "loader" else None)
    loader = make_loader(
        config.clap_data,
        config.data.train_split,
        example,
        rank=session.rank,
        world_size=session.world_size,
        seed=config.seed,
    )
    state = TrainState(
        models={"model": clap_model},
        optimizers={"model": opt},
        schedulers={"model": schedule},
        ema=ema,
        config=config.model_dump(mode="json"),
    )
    max_scale = math.log(clap.max_logit_scale)

    def train_step(batches: list[dict[str, Any]]) -> dict[str, float]:
        logs: dict[str, float] = {}
        for batch in batches:
            features = (
                batch["input_features"]
                if "input_features" in batch
                else clap_features(extractor, batch["wave"].numpy(), window)
            )
            text = tokenizer(
                batch["caption"], padding=True, truncation=True, max_length=tokens_max, return_tensors="pt"
            ).to(session.device)
            features = features.to(session.device)  # [B, 1, T, 64]
            with session.accelerator.autocast():
                out = model(
                    input_ids=text["input_ids"],
                    attention_mask=text["attention_mask"],
                    input_features=features,
                    is_longer=torch.zeros(len(features), 1, dtype=torch.bool, device=session.device),
                )
            loss = global_contrastive_loss(
                out.audio_embeds.float(), out.text_embeds.float(), clap_model.logit_scale_a, clap_model.logit_scale_t
            )
            session.accelerator.backward(loss / len(batches))
            add_mean(logs, {"loss": loss.detach()}, len(batches))
        logs["grad_norm"] = session.clip_and_step(model, opt, schedule)
        with torch.no_grad():  # LAION-CLAP keeps 1/τ ≤ 100: a sharper softmax only destabilises training
            clap_model.logit_scale_a.clamp_(0, max_scale)
            clap_model.logit_scale_t.clamp_(0, max_scale)
        if ema is not None:
            ema.step(clap_model.parameters())
        logs["scale_a"], logs["scale_t"] = (
            clap_model.logit_scale_a.detach().exp().item(),
            clap_model.logit_scale_t.detach().exp().item(),
        )
        return logs

    def validate(step: int) -> dict[str, float]:
        return _validate(session, clap_model, ema, processor, window, config, step)

    run(session, state, loader, train_step, validate=validate)
    if session.is_main:
        if ema is not None:
            ema.copy_to(clap_model.parameters())
        clap_model.eval()
        save_model_atomic(_Bundle(clap_model, processor), config.clap_dir / "model")
        log.info("CLAP saved to %s", config.clap_dir / "model")
    session.accelerator.wait_for_everyone()
    session.logs.close()
    return config.clap_dir / "model"


def _validate(session: Session, model, ema, processor, window: int, config: TrainConfig, step: int) -> dict[str, float]:
    """Recall@k on the validation split (the EMA weights when there are some), main rank only; → recall.json."""
    if not session.is_main:
        return {}
    if ema is not None:
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
    recall = split_recall(model, processor, window, config.clap_data, config.data.valid_split, session.device)
    if ema is not None:
        ema.restore(model.parameters())
    record = {"step": step, "split": config.data.valid_split, **recall}
    (config.clap_dir / "recall.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return {f"recall/{key}": value for key, value in recall.items() if "@" in key}


@torch.no_grad()
def split_recall(model, processor, window: int, data, split: str, device="cpu") -> dict[str, Any]:
    """Embed every (clip, caption) pair of `split` in index order and score Recall@1/5/10 both ways.

    Clips sharing a caption count as matches of each other (recall_at_k `groups`); "pairs" and
    "captions" say how many of each, from which chance follows.
    """
    was_training = model.training
    model.eval()
    tokens_max = max_tokens(model, processor.tokenizer)
    audio, text, captions = [], [], []
    for batch in iter_batches(
        data, split, ClapExample(window, processor.feature_extractor), batch_size=data.batch_size
    ):
        features = batch["input_features"].to(device)
        longer = torch.zeros(len(features), 1, dtype=torch.bool, device=device)
        audio.append(model.get_audio_features(input_features=features, is_longer=longer).pooler_output.float().cpu())
        tokens = processor.tokenizer(
            batch["caption"], padding=True, truncation=True, max_length=tokens_max, return_tensors="pt"
        ).to(device)
        text.append(model.get_text_features(**tokens).pooler_output.float().cpu())
        captions += batch["caption"]
    model.train(was_training)
    if not captions:
        raise ValueError(f"split {split!r}: no (clip, caption) pair to score recall on")
    recall = recall_at_k(torch.cat(audio).numpy(), torch.cat(text).numpy(), groups=captions)
    return {**recall, "pairs": len(captions), "captions": len(set(captions))}


class _Bundle:
    """Model and processor saved into one folder, so save_model_atomic swaps in both at once."""

    def __init__(self, model, processor):
        self.model, self.processor = model, processor

    def save_pretrained(self, folder: Path, **kwargs: Any) -> None:
        from training.models.clap import save_tokenizer

        self.model.save_pretrained(folder, **kwargs)
        self.processor.save_pretrained(folder)
        save_tokenizer(self.processor.tokenizer, folder)


if __name__ == "__main__":  # `python -m training.tasks.clap --config …` (accelerate launch, torchrun)
    command(__doc__, train)
