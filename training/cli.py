"""The trainer's `t2a` commands: `t2a train vae|ldm|vocoder|clap|vggishish|vq|ar|dd`, `t2a encode-latents|encode-tokens`, `t2a sample`.

They reach the `t2a` command through the `t2a.commands` entry points (pyproject.toml), so the
corpus side never imports the trainer; torch and diffusers load only when a command runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from pipelines.core.console import console
from pipelines.core.console import fail as _fail
from training.config import resolve_device as _device

train_app = typer.Typer(
    no_args_is_help=True,
    help="Train the mel VAE, the latent diffusion model, a HiFi-GAN vocoder, a CLAP, or the discrete-token generators (vq, ar, dd).",
)
CONFIG = typer.Option(
    None, "--config", "-c", help="Training config (training/configs/demo.yaml); its values override --preset's."
)
PRESET = typer.Option(
    None,
    "--preset",
    help="A paper's recipe, training/configs/NAME.yaml: audioldm-s, audioldm-l, make-an-audio (docs/training.md).",
)


def _config(path: Path | None, preset: str | None = None):
    from pipelines.core.config import ConfigError
    from training.config import load_config

    try:
        return load_config(path, preset)
    except ConfigError as error:
        _fail(str(error))


def _guard(action):
    """User-fixable problems (missing stages, bad settings, too many broken samples in the shards)
    as one line, not a traceback; a full disk the same way with exit status 1."""
    from pipelines.core.config import ConfigError
    from pipelines.core.io import find_storage_full
    from pipelines.core.registry import UnknownName
    from training.data.stream import LoaderError

    try:
        return action()
    except (ConfigError, UnknownName, FileNotFoundError, ValueError) as error:
        _fail(str(error))
    except LoaderError as error:
        _fail(loader_message(error))
    except OSError as error:
        full = find_storage_full(error, getattr(error, "filename", None) or "the run folder")
        if full is None:
            raise
        _fail(str(full), code=1)


def loader_message(error: Exception) -> str:
    """The loader's own sentence. Raised in a DataLoader worker, torch re-raises it in the main
    process with the worker's traceback pasted into the message; that part is dropped."""
    text = str(error).strip()
    if "Traceback (most recent call last)" in text:
        last = text.splitlines()[-1]
        text = last.split("LoaderError: ", 1)[-1]
    return text


# name → (module of training.tasks, what it writes, a hint printed after it); each trainer module has `train(config) -> Path`.
TRAINERS = {
    "vae": ("vae", "the mel VAE; writes <run>/vae/model.", ""),
    "ldm": ("ldm", "the latent diffusion model; writes <run>/ldm/model.", ""),
    "vocoder": (
        "vocoder",
        "a HiFi-GAN vocoder on the corpus audio; writes <run>/vocoder/model.",
        " (set vocoder.model to it to use it)",
    ),
    "vggishish": (
        "vggishish",
        "the VGGish-ish mel classifier on the corpus labels; writes <run>/vggishish/model.",
        " (codebook.loss.perceptual)",
    ),
    "vq": ("vq", "the spectrogram codebook (VQ-VAE / VQGAN); writes <run>/vq/model.", ""),
    "ar": ("ar", "the autoregressive token transformer (GPT-2) on token shards; writes <run>/ar/model.", ""),
    "dd": ("dd", "Diffsound's discrete diffusion on token shards; writes <run>/dd/model.", ""),
    "inpaint": (
        "inpaint",
        "the inpainting fine-tune of the trained LDM (Make-An-Audio §4.2); writes <run>/inpaint/model.",
        " (t2a sample --checkpoint it --inpaint src.wav --mask START:END)",
    ),
    "prior": (
        "prior",
        "CLIPSonic-SD's diffusion prior (CLIP text → CLIP image embedding); writes <run>/prior/model and gap.json.",
        " (t2a sample --query text-prior --prior it)",
    ),
    "clap": (
        "clap",
        "a CLAP (ClapModel) contrastively on the corpus pairs; writes <run>/clap/model and recall.json.",
        " (annotate.clap.model, or ldm.encoders.clap)",
    ),
}


def _trainer(name: str, module: str, what: str, hint: str) -> None:
    def command(config: Path | None = CONFIG, preset: str | None = PRESET) -> None:
        import importlib

        cfg = _config(config, preset)
        out = _guard(lambda: importlib.import_module(f"training.tasks.{module}").train(cfg))
        console.print(f"{name}: {out}{hint}")

    command.__doc__ = f"Train (or resume) {what}"
    train_app.command(name)(command)


for _name, (_module, _what, _hint) in TRAINERS.items():
    _trainer(_name, _module, _what, _hint)


@train_app.command("classifier")
def train_classifier(
    shards: Path = typer.Argument(..., help="A shard corpus folder: its train split's labels and audio."),
    clap: Path = typer.Option(..., "--clap", help="The ClapModel folder whose audio embeddings the classifier reads."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    epochs: int = typer.Option(200, help="Full-batch epochs."),
    seed: int = typer.Option(0, help="Seed."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Keep CLAP embeddings here for the next run."),
) -> None:
    """Train the multi-label classifier `t2a evaluate` uses for KL and IS (Li et al. 2023 §3.1: sigmoid over the corpus labels)."""
    from training.evaluate.run import train_classifier_command

    train_classifier_command(shards, clap=clap, out=out, epochs=epochs, seed=seed, device=device, cache_dir=cache_dir)


def encode_latents(config: Path | None = CONFIG, preset: str | None = PRESET) -> None:
    """Encode the corpus mels with the trained VAE into latent shards keyed by the VAE's hash."""
    from training.tasks import encode_latents as job

    cfg = _config(config, preset)
    out = _guard(lambda: job.encode(cfg))
    console.print(f"latents: {out}")


def encode_tokens(config: Path = CONFIG) -> None:
    """Encode the corpus mels with the trained codebook into token shards (uint16 indices) keyed by its hash."""
    from training.tasks import encode_tokens as job

    cfg = _config(config)
    out = _guard(lambda: job.encode(cfg))
    console.print(f"tokens: {out}")


def sample(
    prompts: list[str] = typer.Argument(None, help="Text prompts (or use --prompts-file)."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="A model folder or a run's ldm folder (default: <run>/ldm of --config)."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Training config: its sample: block gives the defaults."
    ),
    prompts_file: Path | None = typer.Option(None, "--prompts-file", help="One prompt per line; # comments."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: <run>/samples or ./samples)."),
    steps: int | None = typer.Option(None, help="Sampler steps."),
    guidance: float | None = typer.Option(
        None, help="Classifier-free guidance scale (0: unconditional, 1: no guidance)."
    ),
    sampler: str | None = typer.Option(None, help="ddim, dpm-solver++ or ddpm."),
    eta: float | None = typer.Option(None, help="DDIM η (ddim only; default: the config's sample.eta, else 0)."),
    seed: int | None = typer.Option(None, help="Seed of the first sample; item i uses seed + i."),
    seconds: float | None = typer.Option(None, help="Length of each sample (default: the training window)."),
    per_prompt: int | None = typer.Option(None, "--per-prompt", help="Samples per prompt."),
    style_source: Path | None = typer.Option(
        None, "--style-transfer", help="Audio to transform (AudioLDM §4 style transfer)."
    ),
    strength: float = typer.Option(0.5, help="Style transfer: start at n0 = strength·N."),
    inpaint_source: Path | None = typer.Option(
        None, "--inpaint", help="Audio whose kept region stays (AudioLDM eq. 11)."
    ),
    keep: str | None = typer.Option(None, help="Inpainting: seconds kept, START:END (the rest is generated)."),
    mask: str | None = typer.Option(
        None, "--mask", help="Inpainting: seconds regenerated, START:END (the rest is kept; Make-An-Audio §4.2)."
    ),
    keep_band: str | None = typer.Option(
        None, "--keep-band", help="Inpainting: the frequency band kept, LOW:HIGH Hz (with --keep: their intersection)."
    ),
    super_resolve: Path | None = typer.Option(
        None, "--super-resolve", help="Low-rate audio whose band is kept and the rest generated (AudioLDM §4)."
    ),
    cutoff: float | None = typer.Option(None, help="Super-resolution: Hz observed (default: the input's Nyquist)."),
    reference: Path | None = typer.Option(
        None,
        "--reference",
        help="Full-band audio to score the samples against: LSD in samples.json (AudioLDM Table 5).",
    ),
    vocoder: Path | None = typer.Option(
        None,
        "--vocoder",
        help="A SpeechT5HifiGan folder (default: the config's vocoder.model, else the model's trained one, else Griffin-Lim).",
    ),
    top_k: int | None = typer.Option(
        None, "--top-k", min=1, help="Token AR models: sample from the K likeliest codes (default: the model's, 512)."
    ),
    query: str = typer.Option(
        "text-zs",
        "--query",
        help="text-zs: the prompts through the model's text tower; text-prior: CLIP text → the diffusion prior's image embedding; image / video: CLIP image queries (CLIPSonic §2).",
    ),
    images: list[Path] = typer.Option(None, "--image", help="--query image: a picture (repeat for several)."),
    video: Path | None = typer.Option(
        None, "--video", help="--query video: a video; 4 frames picked as ingest picks them, pooled."
    ),
    prior: Path | None = typer.Option(None, "--prior", help="--query text-prior: a `t2a train prior` model folder."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Generate audio (WAV) and mel spectrograms (PNG) for prompts (an LDM or a token generator: ar, dd), or for image / video queries."""
    from training.sample.generate import Request, read_prompts, run
    from training.sample.tokens import run_tokens, token_kind

    cfg = _config(config) if config else None
    defaults = cfg.sample if cfg else None
    generated = {"ldm": "ldm_dir", "ar": "ar_dir", "dd": "dd_dir"}
    checkpoint = checkpoint or (getattr(cfg, generated[cfg.generator]) if cfg else None)
    if checkpoint is None:
        _fail("give --checkpoint (a model folder) or --config")
    images = list(images or [])
    if query in ("image", "video"):  # the queries name the items (file names in samples.json)
        texts = [p.name for p in images] if query == "image" else ([video.name] if video else [])
    else:
        texts = _guard(lambda: read_prompts(list(prompts or []), prompts_file)) or (
            list(defaults.prompts) if defaults else []
        )
    if not texts and query in ("image", "video"):
        _fail(f"--query {query} needs --{query}")
    if not texts:
        _fail("no prompts: pass them as arguments, with --prompts-file, or in the config's sample.prompts")
    pick = lambda value, name, fallback: (
        value if value is not None else (getattr(defaults, name) if defaults else fallback)
    )  # noqa: E731
    folder = _guard(lambda: model_folder(checkpoint))
    if token_kind(folder):  # a token generator: its own guidance (1 unless trained for it) and DD steps
        token_cfg = getattr(cfg, token_kind(folder).removeprefix("token-")) if cfg else None
        guidance = guidance if guidance is not None else (token_cfg.guidance if token_cfg else 1.0)
        if steps is None:  # DD: the config's dd.steps, else the model's; AR ignores steps
            steps = token_cfg.steps if token_cfg is not None and hasattr(token_cfg, "steps") else _saved_steps(folder)
    # the config's DDIM η applies to its ddim sampler: `--sampler ddpm` on an η = 1 preset samples without it
    config_eta = defaults.eta if defaults and pick(sampler, "sampler", "ddim") == "ddim" else 0.0
    request = _guard(
        lambda: Request(
            prompts=texts,
            steps=pick(steps, "steps", 50),
            guidance=pick(guidance, "guidance", 2.0),
            sampler=pick(sampler, "sampler", "ddim"),
            eta=eta if eta is not None else config_eta,
            seed=pick(seed, "seed", 0),
            seconds=pick(seconds, "seconds", None),
            per_prompt=pick(per_prompt, "per_prompt", 1),
            style_source=style_source,
            style_strength=strength,
            inpaint_source=inpaint_source,
            inpaint_keep=_span(keep) if keep else None,
            inpaint_mask=_span(mask, "--mask") if mask else None,
            inpaint_band=_span(keep_band, "--keep-band", "LOW:HIGH in Hz") if keep_band else None,
            super_resolve=super_resolve,
            cutoff=cutoff,
            griffin_lim_iters=cfg.vocoder.griffin_lim_iters if cfg else 32,
            query=query,
            images=tuple(images),
            video=video,
            prior=prior,
            top_k=top_k,
        )
    )
    vocoder = vocoder or (cfg.vocoder.model if cfg else None)
    out = out or (cfg.samples_dir if cfg else Path("samples"))
    logging.getLogger("training").setLevel(logging.INFO)
    if token_kind(folder):  # token generators: tokens → codebook decoder → mel
        written = _guard(lambda: run_tokens(folder, request, out, device=_device(device), vocoder=vocoder))
    else:
        written = _guard(
            lambda: run(folder, request, out, device=_device(device), vocoder=vocoder, reference=reference)
        )
    console.print(f"{len(written)} files in {out}")


def prompts(
    shards: Path = typer.Argument(..., help="A shard corpus folder (root with <split>/shard-*.tar)."),
    split: str = typer.Option("test", help="The held-out split whose texts become prompts."),
    limit: int | None = typer.Option(None, min=1, help="At most this many prompts (the first, in shard order)."),
    out: Path = typer.Option(..., "--out", help="The prompts file to write (one per line), for sample --prompts-file."),
    form: str = typer.Option(
        "text",
        "--form",
        help='text: human caption, else label text; photo: "a photo of [label]" per label (CLIPSonic §3, CLIP queries); sound: "the sound of [label]".',
    ),
) -> None:
    """Held-out prompts: a split's ground-truth texts (human captions, else label text), each once."""
    from training.evaluate.data import heldout_prompts
    from training.sample.io import atomic_path

    texts = _guard(lambda: heldout_prompts(shards, split, limit, form))
    what = "human caption, else label text" if form == "text" else f"{form} prompts of the labels, CLIPSonic §3"
    header = f"# held-out prompts: split {split!r} of {shards} ({what})\n"
    with atomic_path(out) as temp:
        temp.write_text(header + "".join(f"{text}\n" for text in texts), encoding="utf-8")
    console.print(f"{len(texts)} prompts in {out}")


def model_folder(path: Path) -> Path:
    """A model folder itself (t2a.json or model_index.json), or a run folder's model/ inside it."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / "t2a.json").is_file() or (candidate / "model_index.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"{path} holds no trained model (t2a.json / model_index.json): train one with `t2a train ldm`"
    )


def _saved_steps(folder: Path) -> int:
    import json

    return int(json.loads((Path(folder) / "t2a.json").read_text()).get("sample_steps", 50))


def _span(text: str, option: str = "--keep", form: str = "START:END in seconds") -> tuple[float, float]:
    try:
        start, end = (float(part) for part in text.split(":"))
    except ValueError:
        _fail(f"{option} must be {form}, got {text!r}")
    return start, end
