"""`t2a evaluate-queries`: CLIPSonic §3 "Evaluation metrics" (FAD and CLAP score) and Table 2 (the modality
gap) per query mode, for a trained clip-image model on a held-out split.

    result = evaluate_queries(config, QuerySettings(clap=Path("models/clap"), prior=Path("run/prior/model")))
    write_json(Path("run/queries.json"), result); print(format_rows(result))

The held-out clips are the split's clips with labels and CLIP frame embeddings (the pairs `t2a train prior`
reads, training/tasks/prior.py PriorExample). Clip i gives item i of every mode, sampled from seed + i:

    text-zs     the CLIP text embedding of "a photo of [label]" (the clip's first label; CLIPSonic §3 "Data"),
                CLIPSonic-ZS
    text-prior  the diffusion prior's image embedding for that text embedding (CLIPSonic-PD / -SD; --prior)
    image       the clip's own frame: the CLIP embedding the annotate stage stored for one of its frames,
                drawn from seed + i (CLIPSonic-IQ: an image query, the model's training condition)

Each mode's samples (WAVs + samples.json under <out>/<mode>/) are scored against the split's reference clips
by `t2a evaluate`'s own code (training/evaluate/run.py evaluate): FD over CLAP embeddings, the CLAP score
against the item's "a photo of [label]" text, the share of samples whose own prompt ranks first by CLAP
among the run's prompts, and with --audioldm-eval FAD over VGGish and FD over PANNs Cnn14 as audioldm_eval
computes them (no KL: it pairs samples with references by text, and the photo prompts are not the clips' texts). Table 2's figure, `cos_to_frames`, is the
mean cosine between each item's query embedding and its clip's ground-truth CLIP frame embeddings, over
(clip, frame) pairs as `t2a train prior`'s gap.json averages them (for image queries, the clip's other
frames: the query frame itself is left out; a one-frame clip counts 1).

What differs from the paper: CLIPSonic samples 512 clips and reports FAD over VGGish only; the image row
has no CLAP score there (no text query) — here it is scored against its clip's label text, and FD over
CLAP is always reported (FAD needs --audioldm-eval and, for the paper's scale, --vggish weights).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import typer

SCHEMA = "t2a.query-evaluation/1"
MODES = ("text-zs", "text-prior", "image")
ROW_METRICS = ("fd_clap", "clap_score", "fd_panns", "audioldm_fad", "audioldm_fd", "prompt_top1")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuerySettings:
    """What `t2a evaluate-queries` takes besides the config: the models, the split and the sampler settings
    (None: the config's sample: block)."""

    clap: Path
    checkpoint: Path | None = None  # None: <run>/ldm/model
    prior: Path | None = None  # None: <run>/prior/model when it exists
    modes: tuple[str, ...] = MODES
    split: str = "test"
    limit: int | None = None
    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = None
    seed: int | None = None
    seconds: float | None = None
    batch_size: int = 16
    vocoder: Path | None = None
    cache_dir: Path | None = None
    panns: Path | None = None
    audioldm_eval: bool = False
    cnn14: Path | None = None
    vggish: Path | None = None
    device: str = "cpu"
    out: Path | None = None  # the result JSON; the samples go beside it, <out without .json>/<mode>/


@dataclass
class HeldOut:
    keys: list[str]
    prompts: list[str]  # "a photo of [label]" of each clip's first label
    frames: list[torch.Tensor]  # [F_i, D] L2-normalised CLIP frame embeddings


def held_out(data, split: str, limit: int | None = None) -> HeldOut:
    """The split's clips with labels and frame embeddings, in shard and key order; at most `limit`."""
    from training.data.loader import iter_batches
    from training.tasks.prior import PriorExample

    clips = HeldOut([], [], [])
    for batch in iter_batches(data, split, PriorExample(), batch_size=data.batch_size):
        for key, prompts, frames in zip(batch["key"], batch["prompts"], batch["clip_image"]):
            if limit is not None and len(clips.keys) >= limit:
                return clips
            clips.keys.append(key)
            clips.prompts.append(prompts[0])
            clips.frames.append(F.normalize(torch.as_tensor(frames).float(), dim=-1))
    if not clips.keys:
        raise ValueError(
            f"split {split!r} of {data.shards} has no clip with labels and CLIP frame embeddings (clip_image): "
            "nothing to query with"
        )
    return clips


def query_rows(bundle, clips: HeldOut, mode: str, prior, seed: int) -> tuple[torch.Tensor, list[int | None]]:
    """([N, 1, D] L2-normalised conditions, the frame each image query took (None for text queries))."""
    conditioner = bundle.conditioner
    if mode == "image":
        picks = [
            int(torch.randint(len(frames), (1,), generator=torch.Generator().manual_seed(seed + i)))
            for i, frames in enumerate(clips.frames)
        ]
        rows = torch.stack([frames[j] for frames, j in zip(clips.frames, picks)])
        return rows.to(conditioner.device)[:, None], picks
    text = torch.cat([conditioner.from_prompts(clips.prompts[i : i + 64]) for i in range(0, len(clips.prompts), 64)])
    if mode == "text-zs":
        return text, [None] * len(clips.keys)
    generated = prior.generate(text[:, 0].to(prior.device), seed=seed)  # row i from seed + i (prior.generate)
    return F.normalize(generated.float(), dim=-1).to(text.device)[:, None], [None] * len(clips.keys)


def cosines_to_frames(conditions: torch.Tensor, clips: HeldOut, picks: list[int | None]) -> list[tuple[float, int]]:
    """Per clip: (the summed cosine of its query to its ground-truth frames, how many frames: the pairs)."""
    sums = []
    for query, frames, pick in zip(conditions[:, 0].float().cpu(), clips.frames, picks):
        if pick is not None and len(frames) > 1:
            frames = torch.cat([frames[:pick], frames[pick + 1 :]])  # the image query's own frame left out
        sums.append((float((frames @ query).sum()), len(frames)))
    return sums


def made_from(**parts: Any) -> dict[str, Any]:
    """What a folder of samples was made from, JSON-ready: recorded in its samples.json, compared on a re-run."""
    return json.loads(json.dumps(parts, sort_keys=True, default=str))


def tensor_sha256(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def already_made(folder: Path, recipe: dict[str, Any]) -> bool:
    """The folder's samples.json records `recipe` and every WAV it lists is there: a re-run keeps them."""
    try:
        summary = json.loads((folder / "samples.json").read_text())
    except (OSError, ValueError):
        return False
    items = summary.get("items") or []
    return (summary.get("model") or {}).get("made_from") == recipe and all((folder / i["wav"]).is_file() for i in items)


def check_scorers(settings: Any) -> None:
    """The scoring models exist, checked before any sampling: a typo costs seconds, not a sampling run."""
    wanted = {"--clap": (settings.clap, "config.json"), "--classifier": (getattr(settings, "classifier", None), "")}
    wanted |= {"--panns": (settings.panns, ""), "--cnn14": (settings.cnn14, ""), "--vggish": (settings.vggish, "")}
    for option, (path, inside) in wanted.items():
        if path is not None and not (Path(path) / inside).exists():
            raise FileNotFoundError(f"{option} {path}: not found" + (f" ({inside} missing)" if inside else ""))


def evaluate_queries(config, settings: QuerySettings) -> dict[str, Any]:
    """Sample the held-out split in each mode, score each mode's samples; the JSON-ready result. A re-run
    keeps a mode's samples when they were made from the same model, prior, clips, queries and settings."""
    from pipelines.core.config import ConfigError
    from pipelines.core.features import get_profile
    from pipelines.core.io import content_sha256
    from training.evaluate.run import evaluate
    from training.models.pipeline import load_bundle
    from training.models.prior import load_prior
    from training.models.vocoder import load_vocoder
    from training.sample.generate import Request, generate, write_outputs

    unknown = [mode for mode in settings.modes if mode not in MODES]
    if unknown or not settings.modes:
        raise ConfigError(f"unknown query modes {unknown}; valid: {', '.join(MODES)}")
    check_scorers(settings)
    checkpoint = model_folder(Path(settings.checkpoint or config.ldm_dir / "model"))
    prior_path = settings.prior or (config.prior_dir / "model" if (config.prior_dir / "model").is_dir() else None)
    if "text-prior" in settings.modes and prior_path is None:
        raise ConfigError(
            "text-prior queries need a diffusion prior: give --prior FOLDER (a `t2a train prior` model; "
            f"none at {config.prior_dir / 'model'}), or leave the mode out with --modes text-zs,image"
        )
    prior = load_prior(prior_path, settings.device) if "text-prior" in settings.modes else None
    bundle = load_bundle(checkpoint, settings.device)
    if bundle.conditioner.name != "clip-image":
        raise ConfigError(
            f"{checkpoint} is conditioned on {bundle.conditioner.name}: query modes need a clip-image model (CLIPSonic)"
        )
    if settings.vocoder is not None:
        bundle.vocoder = load_vocoder(settings.vocoder).to(settings.device)
    defaults = config.sample
    pick = lambda value, name: value if value is not None else getattr(defaults, name)  # noqa: E731
    base = Request(
        prompts=["-"],
        steps=pick(settings.steps, "steps"),
        guidance=pick(settings.guidance, "guidance"),
        sampler=pick(settings.sampler, "sampler"),
        seed=pick(settings.seed, "seed"),
        seconds=pick(settings.seconds, "seconds"),
        griffin_lim_iters=config.vocoder.griffin_lim_iters,
    )
    clips = held_out(config.data, settings.split, settings.limit)
    folder = settings_folder(settings, config)
    cache = settings.cache_dir or folder / "embeddings"
    rate = get_profile(bundle.profile).sample_rate
    model_sha = content_sha256(checkpoint)
    vocoder_sha = content_sha256(settings.vocoder) if settings.vocoder is not None else None
    rows, details = [], {}
    for mode in settings.modes:
        conditions, picks = query_rows(bundle, clips, mode, prior, base.seed)
        pairs = cosines_to_frames(conditions, clips, picks)
        recipe = made_from(
            model=model_sha,
            vocoder=vocoder_sha,
            mode=mode,
            clips=clips.keys,
            conditions=tensor_sha256(conditions),
            request={k: v for k, v in asdict(base).items() if k != "prompts"},
            batch_size=settings.batch_size,
        )
        if already_made(folder / mode, recipe):
            log.info("%s: keeping the samples in %s (same model, queries and settings)", mode, folder / mode)
        else:
            mels, waves = [], []
            for start in range(0, len(clips.keys), settings.batch_size):
                chunk = replace(
                    base, prompts=clips.prompts[start : start + settings.batch_size], seed=base.seed + start
                )
                mel, wave = generate(
                    bundle, chunk, settings.device, condition=conditions[start : start + len(chunk.prompts)]
                )
                mels.append(mel)
                waves.append(wave)
            record = replace(base, prompts=clips.prompts)
            record.query, record.prior = mode, prior_path if mode == "text-prior" else None  # as sampled
            extra = [
                {"clip": key, "query": mode, "cos_to_frames": total / count} | ({"frame": j} if j is not None else {})
                for key, (total, count), j in zip(clips.keys, pairs, picks)
            ]
            info = {**bundle.info, "made_from": recipe}
            write_outputs(
                folder / mode, clips.prompts, torch.cat(mels), torch.cat(waves), rate, record, info=info, extra=extra
            )
        result = evaluate(
            folder / mode,
            str(config.data.shards),
            None,
            clap_folder=settings.clap,
            device=settings.device,
            cache_dir=cache,
            split=settings.split,
            panns=settings.panns,
            audioldm_eval=settings.audioldm_eval,
            cnn14=settings.cnn14,
            vggish=settings.vggish,
        )
        metrics = result["metrics"]
        row = {"mode": mode, "samples": len(clips.keys)}
        row |= {name: metrics[name] for name in ROW_METRICS if name in metrics and metrics[name] is not None}
        row["cos_to_frames"] = sum(t for t, _ in pairs) / sum(c for _, c in pairs)
        rows.append(row)
        details[mode] = {"samples": f"{folder.name}/{mode}", "metrics": metrics, "counts": result["counts"]}
        models = result["models"]
        log.info("%s: %s", mode, row)
    return {
        "schema": SCHEMA,
        "split": settings.split,
        "clips": len(clips.keys),
        "checkpoint": str(checkpoint),
        "prior": str(prior_path) if prior is not None else None,
        "sampling": {k: v for k, v in asdict(base).items() if k in ("steps", "guidance", "sampler", "seed", "seconds")},
        "rows": rows,
        "modes": details,
        "models": models,
    }


def model_folder(path: Path) -> Path:
    """A model folder (t2a.json), or a run step's folder with model/ inside it."""
    for candidate in (Path(path), Path(path) / "model"):
        if (candidate / "t2a.json").is_file():
            return candidate
    raise FileNotFoundError(f"{path} holds no trained model (t2a.json): train one with `t2a train ldm`")


def settings_folder(settings: Any, config) -> Path:
    """Where the samples go: beside the result JSON, <out without .json>/<mode>/ (default <run>/queries/)."""
    return Path(settings.out).with_suffix("") if settings.out is not None else config.run / "queries"


# --- output -----------------------------------------------------------------------------------------

COLUMNS = {
    "fd_clap": "FD (CLAP) ↓",
    "audioldm_fad": "FAD (VGGish) ↓",
    "audioldm_fd": "FD (Cnn14) ↓",
    "fd_panns": "FD (PANNs) ↓",
    "clap_score": "CLAP score ↑",
    "cos_to_frames": "cos(query, frames) ↑",
    "prompt_top1": "own prompt first ↑",
}


def columns(rows: list[dict[str, Any]]) -> list[str]:
    return [name for name in COLUMNS if any(name in row for row in rows)]


def format_rows(result: dict[str, Any]) -> str:
    """A markdown table, one query mode per row."""
    names = columns(result["rows"])
    lines = ["| mode | samples | " + " | ".join(COLUMNS[n] for n in names) + " |", "|---|---:|" + "---:|" * len(names)]
    for row in result["rows"]:
        values = [f"{row[n]:.4f}" if n in row else "n/a" for n in names]
        lines.append(f"| {row['mode']} | {row['samples']} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def print_rows(result: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    names = columns(result["rows"])
    table = Table("mode", "samples", *(COLUMNS[n] for n in names), title=title)
    for row in result["rows"]:
        table.add_row(row["mode"], str(row["samples"]), *(f"{row[n]:.4f}" if n in row else "n/a" for n in names))
    Console().print(table)


def guard(action):
    """Problems a user can fix (a missing model or prior, a wrong split, a bad option) as one line, exit 2."""
    from pipelines.annotate.encoders.base import ModelLoadError
    from pipelines.core.console import fail
    from pipelines.core.registry import UnknownName
    from training.data.stream import LoaderError

    try:
        return action()
    except (ModelLoadError, UnknownName, FileNotFoundError, ValueError, LoaderError) as error:
        fail(str(error).strip().splitlines()[-1] if isinstance(error, LoaderError) else str(error))


def load_training_config(path: Path):
    from pipelines.core.config import ConfigError
    from pipelines.core.console import fail
    from training.config import load_config

    try:
        return load_config(path)
    except ConfigError as error:
        fail(str(error))


# --- command ----------------------------------------------------------------------------------------


def evaluate_queries_command(
    config_path: Path = typer.Option(
        ..., "--config", "-c", help="The clip-image model's training config (data.shards, run, sample:)."
    ),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="The model folder (default: <run>/ldm/model)."),
    prior: Path | None = typer.Option(
        None, "--prior", help="A `t2a train prior` model for text-prior (default: <run>/prior/model if there)."
    ),
    modes: str = typer.Option(",".join(MODES), "--modes", help="Comma-separated query modes to evaluate."),
    split: str = typer.Option("test", "--split", help="The held-out split."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many clips (CLIPSonic: 512)."),
    clap: Path = typer.Option(..., "--clap", help="A transformers ClapModel folder (FD over CLAP, CLAP score)."),
    steps: int | None = typer.Option(None, help="Sampler steps (default: the config's sample.steps)."),
    guidance: float | None = typer.Option(None, help="Guidance scale w (default: sample.guidance; CLIPSonic: 1.5)."),
    sampler: str | None = typer.Option(None, help="ddim, dpm-solver++ or ddpm (default: sample.sampler)."),
    seed: int | None = typer.Option(None, help="Item i samples from seed + i (default: sample.seed)."),
    seconds: float | None = typer.Option(None, help="Sample length (default: sample.seconds, else the window)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Samples per sampler batch."),
    vocoder: Path | None = typer.Option(None, "--vocoder", help="A SpeechT5HifiGan folder (default: the model's)."),
    out: Path | None = typer.Option(
        None, "--out", help="Result JSON (default: <run>/queries.json); samples beside it."
    ),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Embedding cache (default: <out>/embeddings)."),
    panns: Path | None = typer.Option(None, "--panns", help="A PANNs Cnn14 checkpoint: adds FD over PANNs."),
    paper: bool = typer.Option(
        False, "--audioldm-eval/--no-audioldm-eval", help="Add FAD over VGGish and FD over Cnn14 (audioldm_eval)."
    ),
    cnn14: Path | None = typer.Option(None, "--cnn14", help="16-kHz Cnn14 weights for --audioldm-eval."),
    vggish: Path | None = typer.Option(None, "--vggish", help="VGGish weights for --audioldm-eval (FAD)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """FAD / CLAP score and the modality gap per query mode (CLIPSonic §3, Tables 1–2) on a held-out split."""
    from rich.console import Console

    from training.config import resolve_device
    from training.sample.io import write_json

    config = load_training_config(config_path)
    settings = QuerySettings(
        clap=clap,
        checkpoint=checkpoint,
        prior=prior,
        modes=tuple(m.strip() for m in modes.split(",") if m.strip()),
        split=split,
        limit=limit,
        steps=steps,
        guidance=guidance,
        sampler=sampler,
        seed=seed,
        seconds=seconds,
        batch_size=batch_size,
        vocoder=vocoder,
        cache_dir=cache_dir,
        panns=panns,
        audioldm_eval=paper,
        cnn14=cnn14,
        vggish=vggish,
        device=resolve_device(device),
    )
    target = Path(out or config.run / "queries.json")
    result = guard(lambda: evaluate_queries(config, replace(settings, out=target)))
    write_json(target, result)
    print_rows(result, f"query modes on split {split!r} ({result['clips']} clips)")
    Console(stderr=True, soft_wrap=True).print(f"written: {target}")
