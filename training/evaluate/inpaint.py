"""`t2a evaluate-inpaint`: Make-An-Audio §4.2 / Table 2's inpainting evaluation — held-out clips masked with
the "wide" and "narrow" masks, inpainted, and scored against the originals with FD and KL.

    result = evaluate_inpaint(config, InpaintSettings(clap=Path("models/clap"), classifier=Path("models/labels")))

For each clip of the split (its first mel window of the model's length, as the fine-tune's validation crops it):
its latent z_0 (the VAE posterior mean; for a mel-space model the normalised mel), one mask per clip and family
drawn on the latent grid by training/data/masks.py wide_narrow (wide = LaMa's thick setting, narrow = its thin;
the paper does not define them) from a numpy generator seeded with `seed` — the same masks on every run — and
the clip's own training condition (conditioner.from_batch: its caption, CLAP audio embedding or a frame's CLIP
embedding, frames drawn from `seed`). Then the model fills the masked region:

    a fine-tuned inpainting model (`t2a train inpaint`, 1 + C + C input channels): the observation as input
        channels, Make-An-Audio §4.2
    any other LDM: zero-shot, the observed region re-imposed after every step, AudioLDM §4 eq. 11

Outputs under <out without .json>/: original/ (each clip's window decoded and vocoded as the samples are: the
reference, so that only the inpainting differs), wide/ and narrow/ (WAVs + samples.json, the same file names).
Each family's samples are scored against original/ by `t2a evaluate`'s code (training/evaluate/run.py):
FD over CLAP embeddings, and with --classifier the KL of the label classifier's posteriors per (inpainted,
original) pair; with --audioldm-eval also FD over PANNs Cnn14 (2048-d) and its softmax / sigmoid KL as
audioldm_eval computes them.

What differs from the paper: Make-An-Audio's FID is over "melception" features (Iashin & Rahtu 2021, an
Inception net trained on VGGSound mel spectrograms) and its KL over that classifier's posteriors; no such
model (nor a torchvision Inception for a mel-as-image FID) is available offline here, so FD is over the
embedders `t2a evaluate` has (CLAP, optionally PANNs Cnn14 — a mel-spectrogram classifier like melception),
and KL over the CLAP label probe (or Cnn14). The values are not on the paper's scale.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer

SCHEMA = "t2a.inpaint-evaluation/1"
KINDS = ("wide", "narrow")
ROW_METRICS = ("fd_clap", "kl", "fd_panns", "audioldm_fd", "audioldm_kl_softmax", "audioldm_kl_sigmoid")
ORIGINAL = "original"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InpaintSettings:
    clap: Path
    checkpoint: Path | None = None  # None: <run>/inpaint/model when trained, else <run>/ldm/model
    split: str = "test"
    limit: int | None = None
    steps: int | None = None  # None: the config's sample: block
    guidance: float | None = None
    sampler: str | None = None
    seed: int | None = None
    batch_size: int = 16
    vocoder: Path | None = None
    classifier: Path | None = None
    cache_dir: Path | None = None
    panns: Path | None = None
    audioldm_eval: bool = False
    cnn14: Path | None = None
    vggish: Path | None = None
    device: str = "cpu"
    out: Path | None = None  # the result JSON; the samples go beside it, <out without .json>/


@dataclass
class HeldOut:
    keys: list[str]
    latents: torch.Tensor  # [N, C, h, w], scaled as the UNet sees them
    conditions: torch.Tensor  # [N, tokens, D] (or [N, D])


def default_checkpoint(config) -> Path:
    """The fine-tuned inpainting model when `t2a train inpaint` wrote one, else the LDM (zero-shot)."""
    for folder in (config.inpaint_dir / "model", config.ldm_dir / "model"):
        if (folder / "t2a.json").is_file():
            return folder
    raise FileNotFoundError(
        f"no trained model at {config.inpaint_dir / 'model'} or {config.ldm_dir / 'model'}: give --checkpoint"
    )


@torch.no_grad()
def held_out(config, bundle, split: str, limit: int | None, seed: int, device: str) -> HeldOut:
    """The split's clips: the first window of the model's padded length, encoded; each clip's own condition."""
    from training.data.examples import mel_example, with_frames
    from training.data.loader import iter_batches
    from training.sample.generate import layout

    shape = layout(bundle, None)
    vae, conditioner = bundle.vae, bundle.conditioner
    if conditioner.name == "clip-image":
        conditioner.frames = config.ldm.clip_frames  # as `t2a train inpaint` conditions (one random frame: §2)
    generator = torch.Generator().manual_seed(seed)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    keys, latents, conditions = [], [], []
    example = with_frames(mel_example(bundle.profile, shape.padded, random_crop=False), conditioner.name)
    for batch in iter_batches(config.data, split, example, batch_size=config.data.batch_size):
        mean = vae.encode(batch["mel"].to(device, vae.dtype)).latent_dist.mean
        latents.append(((mean.float() - shift) * vae.config.scaling_factor).cpu())
        conditions.append(conditioner.from_batch(batch, generator).float().cpu())
        keys += list(batch["key"])
        if limit is not None and len(keys) >= limit:
            break
    if not keys:
        raise ValueError(f"split {split!r} of {config.data.shards} has no clip with a {bundle.profile} mel")
    n = len(keys) if limit is None else min(limit, len(keys))
    return HeldOut(keys[:n], torch.cat(latents)[:n], torch.cat(conditions)[:n])


def masks(kind: str, count: int, grid: tuple[int, int], seed: int) -> torch.Tensor:
    """[count, 1, h, w] evaluation masks (1 = to generate), drawn in clip order from default_rng(seed)."""
    from training.data.masks import wide_narrow

    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([wide_narrow(grid, kind, rng) for _ in range(count)]))[:, None]


def evaluate_inpaint(config, settings: InpaintSettings) -> dict[str, Any]:
    """Inpaint the held-out clips under each mask family and score them against the originals."""
    from pipelines.core.features import get_profile
    from pipelines.core.io import content_sha256
    from training.evaluate.queries import already_made, check_scorers, made_from, model_folder, tensor_sha256
    from training.evaluate.run import evaluate
    from training.models.inpaint import is_inpainting
    from training.models.pipeline import load_bundle
    from training.models.vocoder import load_vocoder
    from training.sample.generate import Observed, Request, decode, generate, write_outputs

    check_scorers(settings)
    checkpoint = model_folder(Path(settings.checkpoint)) if settings.checkpoint else default_checkpoint(config)
    bundle = load_bundle(checkpoint, settings.device)
    if settings.vocoder is not None:
        bundle.vocoder = load_vocoder(settings.vocoder).to(settings.device)
    fine_tuned = is_inpainting(bundle.unet, bundle.vae.config.latent_channels)
    defaults = config.sample
    pick = lambda value, name: value if value is not None else getattr(defaults, name)  # noqa: E731
    seed = pick(settings.seed, "seed")
    base = Request(
        prompts=["-"],
        steps=pick(settings.steps, "steps"),
        guidance=pick(settings.guidance, "guidance"),
        sampler=pick(settings.sampler, "sampler"),
        seed=seed,
        griffin_lim_iters=config.vocoder.griffin_lim_iters,
    )
    clips = held_out(config, bundle, settings.split, settings.limit, seed, settings.device)
    folder = Path(settings.out).with_suffix("") if settings.out is not None else config.run / "inpaint-evaluation"
    cache = settings.cache_dir or folder / "embeddings"
    rate = get_profile(bundle.profile).sample_rate
    n, size = len(clips.keys), settings.batch_size
    record = replace(base, prompts=clips.keys)
    chunks = range(0, n, size)
    # what each folder's samples are made from: a re-run keeps a folder made from the same
    recipe = dict(
        model=content_sha256(checkpoint),
        vocoder=content_sha256(settings.vocoder) if settings.vocoder is not None else None,
        clips=clips.keys,
        latents=tensor_sha256(clips.latents),
        request={k: v for k, v in asdict(base).items() if k != "prompts"},
        batch_size=size,
    )
    original = made_from(**recipe, masks=None)
    if not already_made(folder / ORIGINAL, original):
        originals = [decode(bundle, clips.latents[s : s + size].to(settings.device), record) for s in chunks]
        mels, waves = torch.cat([m for m, _ in originals]), torch.cat([w for _, w in originals])
        info = {**bundle.info, "made_from": original}
        write_outputs(folder / ORIGINAL, clips.keys, mels, waves, rate, record, info=info)
    rows, details, models = [], {}, {}
    for kind in KINDS:
        masked = masks(kind, n, tuple(clips.latents.shape[2:]), seed)
        coverage = masked.flatten(1).mean(dim=1).tolist()
        inpainted = made_from(
            **recipe, masks=kind, mask_sha256=tensor_sha256(masked), conditions=tensor_sha256(clips.conditions)
        )
        if already_made(folder / kind, inpainted):
            log.info("%s masks: keeping the samples in %s (same model, clips, masks and settings)", kind, folder / kind)
        else:
            mels, waves = [], []
            for start in chunks:
                chunk = replace(base, prompts=clips.keys[start : start + size], seed=seed + start)
                observed = Observed(clips.latents[start : start + size], 1 - masked[start : start + size])
                condition = clips.conditions[start : start + size]
                mel, wave = generate(bundle, chunk, settings.device, condition=condition, observed=observed)
                mels.append(mel)
                waves.append(wave)
            write_outputs(
                folder / kind,
                clips.keys,
                torch.cat(mels),
                torch.cat(waves),
                rate,
                record,
                info={**bundle.info, "made_from": inpainted},
                extra=[{"clip": key, "masks": kind, "masked": share} for key, share in zip(clips.keys, coverage)],
            )
        result = evaluate(
            folder / kind,
            folder / ORIGINAL,
            None,
            clap_folder=settings.clap,
            classifier=settings.classifier,
            device=settings.device,
            cache_dir=cache,
            panns=settings.panns,
            audioldm_eval=settings.audioldm_eval,
            cnn14=settings.cnn14,
            vggish=settings.vggish,
        )
        metrics = result["metrics"]
        row = {"masks": kind, "clips": n, "masked": float(np.mean(coverage))}
        row |= {name: metrics[name] for name in ROW_METRICS if metrics.get(name) is not None}
        rows.append(row)
        details[kind] = {"samples": f"{folder.name}/{kind}", "metrics": metrics, "counts": result["counts"]}
        models = result["models"]
        log.info("%s masks: %s", kind, row)
    return {
        "schema": SCHEMA,
        "split": settings.split,
        "clips": n,
        "checkpoint": str(checkpoint),
        "path": "fine-tuned (Make-An-Audio §4.2)" if fine_tuned else "zero-shot (AudioLDM §4 eq. 11)",
        "grid": list(clips.latents.shape[1:]),
        "sampling": {k: v for k, v in asdict(base).items() if k in ("steps", "guidance", "sampler", "seed")},
        "reference": f"{folder.name}/{ORIGINAL}",
        "rows": rows,
        "masks": details,
        "models": models,
    }


# --- output -----------------------------------------------------------------------------------------

COLUMNS = {
    "masked": "masked share",
    "fd_clap": "FD (CLAP) ↓",
    "kl": "KL (CLAP probe) ↓",
    "fd_panns": "FD (PANNs) ↓",
    "audioldm_fd": "FD (Cnn14) ↓",
    "audioldm_kl_softmax": "KL softmax (Cnn14) ↓",
    "audioldm_kl_sigmoid": "KL sigmoid (Cnn14) ↓",
}


def columns(rows: list[dict[str, Any]]) -> list[str]:
    return [name for name in COLUMNS if any(name in row for row in rows)]


def format_rows(result: dict[str, Any]) -> str:
    """A markdown table, one mask family per row (Make-An-Audio Table 2's columns)."""
    names = columns(result["rows"])
    lines = ["| masks | clips | " + " | ".join(COLUMNS[n] for n in names) + " |", "|---|---:|" + "---:|" * len(names)]
    for row in result["rows"]:
        values = [f"{row[n]:.4f}" if n in row else "n/a" for n in names]
        lines.append(f"| {row['masks']} | {row['clips']} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


# --- command ----------------------------------------------------------------------------------------


def evaluate_inpaint_command(
    config_path: Path = typer.Option(..., "--config", "-c", help="The model's training config (data.shards, run)."),
    checkpoint: Path | None = typer.Option(
        None,
        "--checkpoint",
        help="A model folder: an inpainting fine-tune, or any LDM (zero-shot). Default: <run>/inpaint/model, else <run>/ldm/model.",
    ),
    split: str = typer.Option("test", "--split", help="The held-out split."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many clips."),
    clap: Path = typer.Option(..., "--clap", help="A transformers ClapModel folder (FD over CLAP)."),
    classifier: Path | None = typer.Option(None, "--classifier", help="A label classifier folder: adds KL."),
    steps: int | None = typer.Option(None, help="Sampler steps (default: the config's sample.steps)."),
    guidance: float | None = typer.Option(None, help="Guidance scale (default: sample.guidance)."),
    sampler: str | None = typer.Option(None, help="ddim, dpm-solver++ or ddpm (default: sample.sampler)."),
    seed: int | None = typer.Option(
        None, help="Seeds the masks, the conditions' frames and the noise (default: sample.seed)."
    ),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Samples per sampler batch."),
    vocoder: Path | None = typer.Option(None, "--vocoder", help="A SpeechT5HifiGan folder (default: the model's)."),
    out: Path | None = typer.Option(
        None, "--out", help="Result JSON (default: <run>/inpaint-evaluation.json); samples beside it."
    ),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Embedding cache (default: <out>/embeddings)."),
    panns: Path | None = typer.Option(None, "--panns", help="A PANNs Cnn14 checkpoint: adds FD over PANNs."),
    paper: bool = typer.Option(
        False, "--audioldm-eval/--no-audioldm-eval", help="Add FD and KL over Cnn14 as audioldm_eval computes them."
    ),
    cnn14: Path | None = typer.Option(None, "--cnn14", help="16-kHz Cnn14 weights for --audioldm-eval."),
    vggish: Path | None = typer.Option(None, "--vggish", help="VGGish weights for --audioldm-eval."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """FD and KL of inpainted held-out clips, wide and narrow masks (Make-An-Audio §4.2, Table 2)."""
    from rich.console import Console
    from rich.table import Table

    from training.config import resolve_device
    from training.evaluate.queries import guard, load_training_config
    from training.sample.io import write_json

    config = load_training_config(config_path)
    target = Path(out or config.run / "inpaint-evaluation.json")
    settings = InpaintSettings(
        clap=clap,
        checkpoint=checkpoint,
        split=split,
        limit=limit,
        steps=steps,
        guidance=guidance,
        sampler=sampler,
        seed=seed,
        batch_size=batch_size,
        vocoder=vocoder,
        classifier=classifier,
        cache_dir=cache_dir,
        panns=panns,
        audioldm_eval=paper,
        cnn14=cnn14,
        vggish=vggish,
        device=resolve_device(device),
        out=target,
    )
    result = guard(lambda: evaluate_inpaint(config, settings))
    write_json(target, result)
    names = columns(result["rows"])
    table = Table("masks", "clips", *(COLUMNS[n] for n in names), title=f"inpainting, {result['path']}")
    for row in result["rows"]:
        table.add_row(row["masks"], str(row["clips"]), *(f"{row[n]:.4f}" if n in row else "n/a" for n in names))
    Console().print(table)
    if "kl" not in columns(result["rows"]):
        Console().print("KL: n/a without --classifier (`t2a train classifier`).", highlight=False)
    Console(stderr=True, soft_wrap=True).print(f"written: {target}")
