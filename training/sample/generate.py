"""Sampling from a trained bundle: text → latent diffusion → VAE decoder → mel → vocoder → waveform.

Follows AudioLDM: classifier-free guidance §3.4 eq. 9, and the zero-shot manipulations of
§4 — style transfer (eq. 10: a shallow reverse process from the noised source latent at n0 = ratio·N)
and inpainting (eq. 11: the observed latent region re-imposed, noised to the current step, after every
step). `t2a sample` calls `run`:

    paths = run(Path("run/ldm/model"), Request(["a dog barks"], steps=50, guidance=2.0), Path("run/samples"))
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
from torch import Tensor

from pipelines.core.config import ConfigError
from pipelines.core.features import MelExtractor, MelProfile, get_profile, load_audio
from training.models.bundle import Bundle
from training.models.inpaint import WithContext, context, is_inpainting
from training.models.vocoder import load_vocoder, mel_to_audio
from training.sample.io import slug, write_json, write_mel_png, write_wav
from training.sample.queries import query_condition

SAMPLERS = ("ddim", "dpm-solver++", "ddpm")


@dataclass
class Request:
    prompts: list[str]
    steps: int = 50
    guidance: float = 2.0  # w of eq. 9; 1: the conditional model alone, 0: the unconditional one
    sampler: str = "ddim"  # ddim | dpm-solver++ | ddpm (training.models.ldm.make_sampler)
    eta: float = 0.0  # DDIM η (sample.eta): 0 deterministic DDIM; ddim only
    seed: int = 0  # item i starts from the noise of seed + i
    seconds: float | None = None  # None: the bundle's training window
    per_prompt: int = 1
    style_source: Path | None = None  # AudioLDM §4 style transfer: the audio to transform
    style_strength: float = 0.5  # n0 / N: 0 returns the source, 1 ignores it
    inpaint_source: Path | None = None  # AudioLDM §4 inpainting: the audio whose part is kept
    inpaint_keep: tuple[float, float] | None = None  # seconds of the source kept; the rest is regenerated
    inpaint_mask: tuple[float, float] | None = None  # seconds of the source regenerated; the rest is kept
    inpaint_band: tuple[float, float] | None = None  # Hz of the source kept (a frequency mask); None: all
    super_resolve: Path | None = None  # AudioLDM §4 super-resolution: low-rate audio whose band is kept
    cutoff: float | None = None  # Hz observed in super_resolve's audio; None: half its sample rate
    griffin_lim_iters: int = 32  # when the bundle has no vocoder (VocoderConfig.griffin_lim_iters)
    top_k: int | None = None  # token AR models: top-K sampling (None: the model's, Li et al. 2023 §3.2: 512)
    query: str = "text-zs"  # training/sample/queries.py: text-zs | text-prior | image | video (CLIPSonic §2)
    images: tuple[Path, ...] = ()  # query image: one item per picture (prompts name them)
    video: Path | None = None  # query video: one item
    prior: Path | None = None  # query text-prior: a `t2a train prior` model folder (CLIPSonic-SD / -PD)

    def __post_init__(self) -> None:
        problems = []
        if not self.prompts:
            problems.append("no prompts")
        if (
            self.steps < 1
            or self.per_prompt < 1
            or self.griffin_lim_iters < 1
            or (self.top_k is not None and self.top_k < 1)
        ):
            problems.append("steps, per_prompt, griffin_lim_iters and top_k must be at least 1")
        if self.guidance < 0 or self.seed < 0 or (self.seconds is not None and self.seconds <= 0):
            problems.append("guidance and seed must be >= 0 and seconds > 0")
        if self.sampler not in SAMPLERS:
            problems.append(f"unknown sampler {self.sampler!r}; valid names: {', '.join(SAMPLERS)}")
        if not (math.isfinite(self.eta) and self.eta >= 0):
            problems.append(f"eta (DDIM η) must be a number >= 0, got {self.eta}")
        elif self.eta and self.sampler != "ddim":
            problems.append(f"eta (DDIM η) is for sampler ddim only; with sampler {self.sampler} set eta 0")
        if not 0 <= self.style_strength <= 1:
            problems.append(f"style_strength must be in [0, 1], got {self.style_strength}")
        if self.inpaint_keep is not None and self.inpaint_mask is not None:
            problems.append("give inpaint_keep (seconds kept) or inpaint_mask (seconds regenerated), not both")
        masked = self.inpaint_keep is not None or self.inpaint_band is not None or self.inpaint_mask is not None
        if (self.inpaint_source is None) == masked:
            problems.append(
                "inpainting needs inpaint_source and inpaint_keep (start, end seconds) and/or inpaint_band (low, high Hz)"
            )
        if self.inpaint_band is not None and not 0 <= self.inpaint_band[0] < self.inpaint_band[1]:
            problems.append(f"inpaint_band must be (low, high) Hz with 0 <= low < high, got {self.inpaint_band}")
        if self.super_resolve is not None and (self.inpaint_source is not None or self.style_source is not None):
            problems.append("super-resolution, inpainting and style transfer are separate requests")
        if self.cutoff is not None and (self.super_resolve is None or self.cutoff <= 0):
            problems.append("cutoff (Hz, > 0) is for super-resolution")
        for name in ("inpaint_keep", "inpaint_mask"):
            span = getattr(self, name)
            if span is not None and not 0 <= span[0] < span[1]:
                problems.append(f"{name} must be (start, end) seconds with 0 <= start < end, got {span}")
        problems += self._query_problems()
        if problems:
            raise ConfigError("sample request: " + "; ".join(problems))

    def _query_problems(self) -> list[str]:
        from training.sample.queries import QUERIES

        if self.query not in QUERIES:
            return [f"unknown query {self.query!r}; valid: {', '.join(QUERIES)}"]
        wanted = {"image": bool(self.images), "video": self.video is not None, "text-prior": self.prior is not None}
        problems = [
            f"--query {mode} needs {option}"
            for mode, option in (("image", "--image"), ("video", "--video"), ("text-prior", "--prior"))
            if self.query == mode and not wanted[mode]
        ]
        problems += [
            f"{option} is for --query {mode}"
            for mode, option in (("image", "--image"), ("video", "--video"), ("text-prior", "--prior"))
            if self.query != mode and wanted[mode]
        ]
        items = len(self.images) if self.query == "image" else 1 if self.query == "video" else len(self.prompts)
        if not problems and len(self.prompts) != items:
            problems.append(f"{len(self.prompts)} names for {items} {self.query} queries")
        return problems


@dataclass(frozen=True)
class Layout:
    """The sample's length and latent shape: T mel frames asked for, padded to what the UNet can halve."""

    frames: int  # mel frames the caller gets back
    padded: int  # frames generated: a multiple of r · 2^(UNet levels - 1)
    ratio: int  # r, the VAE's downsampling (AudioLDM App. C)
    latent: tuple[int, int, int]  # (C, padded / r, n_mels / r)


def layout(bundle: Bundle, seconds: float | None) -> Layout:
    profile = get_profile(bundle.profile)
    if seconds is None:
        frames = bundle.frames or profile.train_frames or profile.frames
    else:  # 1e-9: 10.24 s at hop 160 is 1024 frames, not 1025 through float round-off
        frames = math.ceil(seconds * profile.sample_rate / profile.hop_length - 1e-9)
    ratio = 2 ** (len(bundle.vae.config.block_out_channels) - 1)
    multiple = ratio * 2 ** (len(bundle.unet.config.block_out_channels) - 1)
    if profile.n_mels % ratio:
        raise ValueError(f"profile {profile.name}: {profile.n_mels} mel bins do not divide by the VAE's r = {ratio}")
    padded = -(-frames // multiple) * multiple
    return Layout(frames, padded, ratio, (bundle.vae.config.latent_channels, padded // ratio, profile.n_mels // ratio))


def generate(
    bundle: Bundle,
    request: Request,
    device: str | torch.device = "cpu",
    *,
    condition: Tensor | None = None,
    observed: Observed | None = None,
) -> tuple[Tensor, Tensor]:
    """→ (mels [N, T, n_mels] float32, waves [N, samples] float32), N = prompts × per_prompt, prompt-major.
    `condition` and `observed`: sample_latents' overrides (the evaluations' precomputed queries and corpus mels)."""
    latents = sample_latents(bundle, request, device, condition=condition, observed=observed)
    return decode(bundle, latents, request)


def decode(bundle: Bundle, latents: Tensor, request: Request) -> tuple[Tensor, Tensor]:
    """Scaled latents [N, C, h, w] (as sample_latents returns them) → (mels [N, T, n_mels], waves [N, samples])
    of the request's length: the VAE decoder (or the mel space's denormalisation), then the vocoder."""
    shape = layout(bundle, request.seconds)
    with torch.no_grad(), evaluating(bundle.vae):
        vae = bundle.vae
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        latents = (latents / vae.config.scaling_factor + shift).to(vae.device, vae.dtype)
        mels = vae.decode(latents).sample[:, 0].float()  # [N, padded, n_mels]
    waves = mel_to_audio(mels, bundle.vocoder, bundle.profile, request.griffin_lim_iters)
    profile = get_profile(bundle.profile)
    samples = shape.frames * profile.hop_length
    if request.seconds is not None:
        samples = min(samples, round(request.seconds * profile.sample_rate))
    return mels[:, : shape.frames].cpu(), waves[:, :samples].cpu()


def sample_latents(
    bundle: Bundle,
    request: Request,
    device: str | torch.device = "cpu",
    *,
    condition: Tensor | None = None,
    observed: Observed | None = None,
) -> Tensor:
    """The denoised latents [N, C, T/r, n_mels/r], scaled as the UNet sees them (× scaling_factor).

    `condition` [N, tokens, D]: the conditioning rows themselves, instead of the request's query (per_prompt 1);
    `observed`: an inpainting observation given as latents and a per-item mask (1 = kept), instead of the
    request's source file — `t2a evaluate-queries` and `t2a evaluate-inpaint` (training/evaluate/) use both."""
    shape = layout(bundle, request.seconds)
    unet = bundle.unet.to(device)
    bundle.vae.to(device)
    conditioner = bundle.conditioner.to(device)
    n = len(request.prompts) * request.per_prompt
    # One CPU generator per item, seeded seed + i: item i is the same whatever the batch holds.
    generators = [torch.Generator().manual_seed(request.seed + i) for i in range(n)]
    scheduler = _sampler(request.sampler, bundle.scheduler_config)
    scheduler.set_timesteps(request.steps, device=device)
    with torch.no_grad(), evaluating(unet, bundle.vae):
        if condition is None:
            cond = query_condition(bundle, request).repeat_interleave(request.per_prompt, dim=0)
        elif len(condition) == n:
            cond = condition
        else:
            raise ValueError(f"{len(condition)} condition rows for {n} samples")
        cond = cond.to(device, unet.dtype) if cond.is_floating_point() else cond.to(device)
        null = conditioner.null(n).to(cond) if request.guidance != 1 else None
        noise = _noise(generators, shape.latent).to(device, unet.dtype)
        latents, timesteps = noise * scheduler.init_noise_sigma, scheduler.timesteps
        if request.style_source is not None:
            source = encode_source(bundle, request.style_source, shape.padded, device).to(noise).expand(n, -1, -1, -1)
            latents, timesteps = _shallow_start(scheduler, source, noise, request.style_strength)
        if observed is not None:
            observed = Observed(observed.latent.to(noise), observed.mask.to(device, unet.dtype))
        elif request.inpaint_source is not None or request.super_resolve is not None:
            path, mask = observation(bundle, shape, request)
            source = encode_source(bundle, path, shape.padded, device).to(noise).expand(n, -1, -1, -1)
            observed = Observed(source, mask.to(device, unet.dtype))
        if is_inpainting(unet, bundle.vae.config.latent_channels):
            # Make-An-Audio §4.2's fine-tuned model: the observation enters as input channels, not eq. 11
            if observed is None:
                raise ConfigError(
                    "this is an inpainting model (t2a train inpaint): give --inpaint SOURCE with --mask or --keep"
                )
            unet, observed = WithContext(unet, context(observed.latent, 1 - observed.mask)), None
        step = {"eta": request.eta} if request.sampler == "ddim" else {}  # DDIMScheduler.step's η
        return _denoise(
            unet, conditioner, scheduler, latents, timesteps, cond, null, request.guidance, generators, observed, step
        )


@contextmanager
def evaluating(*modules: torch.nn.Module) -> Iterator[None]:
    """Eval mode for the block, then each module's mode as it was (validation samples mid-training)."""
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)


def _sampler(name: str, scheduler_config: dict[str, Any]):
    from training.models import ldm  # the LDM module owns the sampler registry

    return ldm.make_sampler(name, scheduler_config)


def _noise(generators: list[torch.Generator], shape: tuple[int, ...]) -> Tensor:
    return torch.stack([torch.randn(shape, generator=g) for g in generators])


def guided_prediction(
    unet, conditioner, latents: Tensor, t: Tensor, cond: Tensor, null: Tensor | None, guidance: float
) -> Tensor:
    """Classifier-free guidance, AudioLDM §3.4 eq. 9, in the usual orientation (Ho & Salimans 2021;
    AudioLDM's released code): ε̂ = ε(z, n) + w·(ε(z, n, E) − ε(z, n)). The paper prints w and 1 − w the
    other way round, which at its w = 2 would push away from the prompt. w = 1 and w = 0 need one
    forward; otherwise one batched forward over [null; cond]. Linear, so it holds for v-prediction too."""
    if guidance == 1 or null is None:
        return unet(latents, t, **conditioner.unet_kwargs(cond)).sample
    if guidance == 0:
        return unet(latents, t, **conditioner.unet_kwargs(null)).sample
    both = unet(torch.cat([latents, latents]), t, **conditioner.unet_kwargs(torch.cat([null, cond]))).sample
    unconditional, conditional = both.chunk(2)
    return unconditional + guidance * (conditional - unconditional)


@dataclass
class Observed:
    """AudioLDM §4 inpainting: z_ob (the source latent) and the mask m over it (1 = kept)."""

    latent: Tensor  # [N, C, h, w], scaled
    mask: Tensor  # [1, 1, h, w]: time rows × frequency columns (1 = observed)

    def impose(self, scheduler, latents: Tensor, t_next: Tensor | None, generators: list[torch.Generator]) -> Tensor:
        """Eq. 11: z'_{n-1} = (1 − m) ⊙ z_{n-1} + m ⊙ z^ob_{n-1}, z^ob_{n-1} = z_ob forward-diffused (eq. 2)
        to the step the sampler just reached; after the last step, z_ob itself."""
        target = self.latent
        if t_next is not None:
            noise = _noise(generators, tuple(latents.shape[1:])).to(latents)
            target = scheduler.add_noise(self.latent, noise, t_next.reshape(1))
        return self.mask * target + (1 - self.mask) * latents


def _denoise(
    unet,
    conditioner,
    scheduler,
    latents,
    timesteps,
    cond,
    null,
    guidance,
    generators,
    observed: Observed | None,
    step: dict[str, Any] | None = None,
) -> Tensor:
    """`step`: extra arguments of the scheduler's step (DDIM's η); its noise, if any, comes from `generators`."""
    for i, t in enumerate(timesteps):
        model_input = scheduler.scale_model_input(latents, t)
        prediction = guided_prediction(unet, conditioner, model_input, t, cond, null, guidance)
        latents = scheduler.step(prediction, t, latents, generator=generators, **(step or {})).prev_sample
        if observed is not None:
            latents = observed.impose(
                scheduler, latents, timesteps[i + 1] if i + 1 < len(timesteps) else None, generators
            )
    if observed is not None and len(timesteps) == 0:
        latents = observed.impose(scheduler, latents, None, generators)
    return latents


def _shallow_start(scheduler, source: Tensor, noise: Tensor, strength: float) -> tuple[Tensor, Tensor]:
    """AudioLDM §4 style transfer (eq. 10): z_{n0} = the source latent forward-diffused to n0 = strength·N,
    then only the steps after n0. Strength 0 returns the source latent untouched."""
    steps = len(scheduler.timesteps)
    start = steps - round(strength * steps)
    timesteps = scheduler.timesteps[start:]
    if len(timesteps) == 0:
        return source.clone(), timesteps
    if hasattr(scheduler, "set_begin_index"):  # multistep solvers index their state from here
        scheduler.set_begin_index(start * scheduler.order)
    return scheduler.add_noise(source, noise, timesteps[:1]), timesteps


def source_mel(profile: MelProfile, path: Path, frames: int) -> Tensor:
    """An audio file → its mel in the training layout [frames, n_mels] (cropped, or padded with silence)."""
    try:
        audio, rate = load_audio(path)
    except (OSError, sf.SoundFileError) as error:
        raise ConfigError(f"{path}: cannot read the source audio ({error}); give a readable WAV/FLAC file") from None
    mel, _ = MelExtractor(replace(profile, frames=frames, train_frames=None))(audio, rate)
    return torch.from_numpy(mel.T.copy())


def encode_source(bundle: Bundle, path: Path, frames: int, device) -> Tensor:
    """The source audio's VAE latent [1, C, frames / r, n_mels / r]: the posterior mean, scaled."""
    vae = bundle.vae
    mel = source_mel(get_profile(bundle.profile), Path(path), frames)[None, None]  # [1, 1, T, n_mels]
    mean = vae.encode(mel.to(device, vae.dtype)).latent_dist.mean
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (mean - shift) * vae.config.scaling_factor


def keep_mask(bundle: Bundle, shape: Layout, keep: tuple[float, float]) -> Tensor:
    """m [1, 1, T/r, 1]: a latent row is observed when a mel frame it covers is (AudioLDM §4)."""
    profile = get_profile(bundle.profile)
    rate = profile.sample_rate / profile.hop_length
    first = max(0, math.floor(keep[0] * rate))
    end = min(shape.frames, math.ceil(keep[1] * rate))
    if end <= first:
        raise ConfigError(f"inpaint_keep {keep} covers no frame of the {shape.frames / rate:.2f}-s sample")
    mask = torch.zeros(1, 1, shape.latent[1], 1)
    mask[:, :, first // shape.ratio : (end - 1) // shape.ratio + 1] = 1
    return mask


def observation(bundle: Bundle, shape: Layout, request: Request) -> tuple[Path, Tensor]:
    """The observed audio and its mask m [1, 1, T/r, n_mels/r] (AudioLDM §4, eq. 11).

    Inpainting: the kept seconds × the kept band. Super-resolution (AudioLDM §4, Table 5: 8 → 16 kHz): all
    of the time × the band below the low-rate audio's Nyquist frequency (or `cutoff`); the rest is generated."""
    h, w = shape.latent[1], shape.latent[2]
    if request.super_resolve is not None:
        path = Path(request.super_resolve)
        cutoff = request.cutoff or _nyquist(path)
        mask = torch.ones(1, 1, h, 1) * band_mask(bundle, shape, (0.0, cutoff))
        if bool(mask.all()):
            profile = get_profile(bundle.profile)
            raise ConfigError(
                f"{path}: its band (up to {cutoff:g} Hz) already covers the model's mels (up to {profile.fmax:g} Hz): nothing to super-resolve"
            )
        return path, mask
    mask = torch.ones(1, 1, h, w)
    if request.inpaint_keep is not None:
        mask = mask * keep_mask(bundle, shape, request.inpaint_keep)
    if request.inpaint_mask is not None:  # Make-An-Audio §4.2 / AudioLDM Table 5: 2.5-7.5 s regenerated
        mask = mask * (1 - keep_mask(bundle, shape, request.inpaint_mask))
    if request.inpaint_band is not None:
        mask = mask * band_mask(bundle, shape, request.inpaint_band)
    return Path(request.inpaint_source), mask


def band_mask(bundle: Bundle, shape: Layout, band: tuple[float, float]) -> Tensor:
    """m [1, 1, 1, n_mels/r]: a latent column is observed when every mel band it covers lies inside `band`
    (a band's triangle spans its neighbours' centres: librosa's Slaney mel edges over [fmin, fmax])."""
    import librosa

    profile = get_profile(bundle.profile)
    edges = librosa.mel_frequencies(profile.n_mels + 2, fmin=profile.fmin, fmax=profile.fmax)
    inside = torch.from_numpy((edges[:-2] >= band[0]) & (edges[2:] <= band[1]))
    columns = inside.reshape(shape.latent[2], shape.ratio).all(dim=1).float()
    if not bool(columns.any()):
        raise ConfigError(f"the band {band[0]:g}-{band[1]:g} Hz covers no whole mel band of profile {profile.name}")
    return columns.reshape(1, 1, 1, -1)


def _nyquist(path: Path) -> float:
    try:
        return sf.info(str(path)).samplerate / 2
    except (OSError, sf.SoundFileError, RuntimeError) as error:
        raise ConfigError(f"{path}: cannot read the source audio ({error}); give a readable WAV/FLAC file") from None


def write_outputs(
    out_dir: Path,
    prompts: list[str],
    mels: Tensor,
    waves: Tensor,
    sample_rate: int,
    request: Request,
    *,
    info: dict[str, Any] | None = None,
    extra: list[dict[str, Any]] | None = None,
) -> list[Path]:
    """Per item NNN-<slug>.wav (16-bit PCM) and NNN-<slug>.png (the mel), then samples.json; returns the paths.
    `extra`: per-item fields added to samples.json's items (e.g. super-resolution's LSD).

    `prompts`: one per item, or the request's prompts (repeated per_prompt times, prompt-major)."""
    out_dir, n = Path(out_dir), mels.shape[0]
    items = list(prompts) if len(prompts) == n else [p for p in prompts for _ in range(request.per_prompt)]
    if len(items) != n or waves.shape[0] != n:
        raise ValueError(f"{len(prompts)} prompts, {n} mels and {waves.shape[0]} waves do not match")
    width = max(3, len(str(n - 1)))
    seconds_per_frame = waves.shape[-1] / sample_rate / max(mels.shape[1], 1)
    paths, records = [], []
    for i, prompt in enumerate(items):
        stem = f"{i:0{width}d}-{slug(prompt)}"
        wav, png = out_dir / f"{stem}.wav", out_dir / f"{stem}.png"
        write_wav(wav, waves[i].numpy(), sample_rate)
        write_mel_png(png, mels[i].numpy(), seconds_per_frame, prompt)
        paths += [wav, png]
        records.append(
            {"index": i, "prompt": prompt, "seed": request.seed + i, "wav": wav.name, "png": png.name}
            | (extra[i] if extra else {})
        )
    summary = {
        "request": _jsonable(asdict(request)),
        "sample_rate": sample_rate,
        "seconds": waves.shape[-1] / sample_rate,
        "model": _jsonable(info or {}),
        "items": records,
    }
    write_json(out_dir / "samples.json", summary)
    return [*paths, out_dir / "samples.json"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)  # paths, dtypes: as text


def read_prompts(prompts: list[str], prompts_file: Path | None) -> list[str]:
    """The prompts given directly, then the file's lines; blank lines and `#` comments are skipped."""
    lines = list(prompts)
    if prompts_file is not None:
        try:
            lines += Path(prompts_file).read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise ConfigError(f"{prompts_file}: cannot read the prompts file ({error.strerror or error})") from None
    # Empty when nothing was given: the caller falls back (the CLI to the config's sample.prompts),
    # and Request refuses an empty list.
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def run(
    checkpoint: Path,
    request: Request,
    out_dir: Path,
    device: str | torch.device = "cpu",
    *,
    vocoder: str | Path | None = None,
    reference: Path | None = None,
) -> list[Path]:
    """load_bundle → generate → write_outputs; `vocoder` (a SpeechT5HifiGan folder) overrides the bundle's.
    `reference`: the full-band audio a super-resolution is scored against (LSD per item in samples.json,
    AudioLDM §4 Table 5)."""
    from training.models.pipeline import load_bundle

    bundle = load_bundle(checkpoint, device)
    if vocoder is not None:
        bundle.vocoder = load_vocoder(vocoder).to(device)
    mels, waves = generate(bundle, request, device)
    rate = get_profile(bundle.profile).sample_rate
    extra = None
    if reference is not None:
        from training.sample.lsd import lsd_to_file

        if not Path(reference).is_file():
            raise ConfigError(f"{reference}: no such reference audio file")
        extra = [{"lsd": lsd_to_file(wave.numpy(), rate, Path(reference))} for wave in waves]
    return write_outputs(out_dir, request.prompts, mels, waves, rate, request, info=bundle.info, extra=extra)
