"""The training configuration (training/configs/*.yaml): typed, strict, paths resolved against the file.

One file drives every training command of a run — `t2a train vae`, `t2a encode-latents`,
`t2a train ldm`, `t2a sample` — so their outputs agree (`run/vae`, `run/latents`, `run/ldm`,
`run/samples`). YAML holds values only; an unknown key is an error naming its key path
(pipelines.core.config.StrictModel). docs/training.md is the reader-facing reference.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from pipelines.core.config import ConfigError, OutputDir, StrictModel, format_validation_error, load_yaml

PositiveInt = Annotated[int, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
Device = Literal["auto", "cpu", "cuda"]


class ReprogramConfig(StrictModel):
    """Make-An-Audio §3.2.2 dynamic reprogramming (App. F templates, pipelines.annotate.prompts.reprogram), on
    the fly in the LDM's loader: N events drawn from D, the corpus's single-event clips (training/data/clips.py),
    the conditioning recomputed from the composed clip (training.data.examples.AudioAugment)."""

    probability: Probability = 0.0  # share of training samples reprogrammed
    counts: list[Count] = [0, 1, 2]  # N ~ U(counts) extra events per reprogrammed sample


class MixupConfig(StrictModel):
    """AudioLDM §3.3 eq. 8 mixup of two samples, λ ~ Beta(α, α)."""

    probability: Probability = 0.0
    alpha: Annotated[float, Field(gt=0)] = 5.0
    # data.augment.mixup (the LDM): "waveform" as AudioLDM §3.3 — two clips' waveforms mixed, the mel, latent
    # and CLAP audio embedding recomputed from the mix, nothing else mixed; "latent": two batch examples'
    # mels/latents and CLAP vectors mixed with one λ (cheaper, not the paper's). vae.mixup always mixes waveforms.
    domain: Literal["latent", "waveform"] = "latent"


class CurriculumConfig(StrictModel):
    """Diffsound Algorithm 3: `n` epochs on single-event clips, then 2n on multi-event ones."""

    n: PositiveInt


class MbtgConfig(StrictModel):
    """Diffsound §IV-C, Algorithm 3: a share of the captions replaced, every time a sample is read (so every
    epoch), by a freshly drawn mask-based text of its labels: m ~ U(counts) mask tokens in each gap."""

    probability: Probability = 0.0
    counts: list[PositiveInt] = [1, 2]  # Diffsound §IV-C: m ∈ {1, 2}
    mask_token: str | None = None  # None: the conditioning text encoder's own (RoBERTa's "<mask>" for CLAP)


class AugmentConfig(StrictModel):
    reprogram: ReprogramConfig = ReprogramConfig()
    mbtg: MbtgConfig = MbtgConfig()
    mixup: MixupConfig = MixupConfig()
    curriculum: CurriculumConfig | None = None


class DataConfig(StrictModel):
    """Where the shards are and how the streaming loader (training/data/loader.py) reads them."""

    shards: str  # corpus folder or URL holding index.json: a local path, http(s)://, s3://, gs://
    train_split: str = "train"
    valid_split: str = "valid"
    profile: str = "audioldm"  # mel profile (pipelines.core.features); the VAE's input
    crop_frames: PositiveInt | None = None  # training window in mel frames (None: the whole mel)
    batch_size: PositiveInt = 8
    workers: Count = 0  # DataLoader worker processes per rank
    shuffle_buffer: Count = 256  # samples
    shard_shuffle: bool = True  # a seeded permutation of the shards every epoch
    max_error_rate: Probability = 0.05  # skipped / read samples above this stops training
    min_samples_for_rate: PositiveInt = 50  # the rate is checked once this many samples were read
    retries: Count = 3  # per shard open, for remote storage
    storage_options: dict[str, Any] = {}  # passed to fsspec (credentials, endpoint_url, ...)
    augment: AugmentConfig = AugmentConfig()


class OptimConfig(StrictModel):
    """AdamW, linear warm-up then constant (AudioLDM and Make-An-Audio train at a constant rate)."""

    lr: Annotated[float, Field(gt=0)] = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    warmup_steps: Count = 0
    grad_accum: PositiveInt = 1
    grad_clip: Annotated[float, Field(ge=0)] = 1.0  # 0: no clipping


class LoopConfig(StrictModel):
    """The schedule of one training command."""

    steps: PositiveInt = 1000  # optimizer steps
    optim: OptimConfig = OptimConfig()
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.999  # 0: no EMA
    checkpoint_every: PositiveInt = 500
    log_every: PositiveInt = 10
    validate_every: Count = 0  # 0: only at the end
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    # Speed settings: they change how the step runs, not what it computes (up to rounding), so a run may
    # resume with other values (training.loop._RESUMABLE). bench/ldm_throughput.py measures each.
    compile: bool = False  # torch.compile the model
    channels_last: bool = False  # the model's 4-D weights (and the LDM's latents) in NHWC memory format
    fused_adamw: bool = False  # AdamW's fused kernel (one launch per step) instead of the foreach one
    attention: Literal["sdpa", "eager"] = "sdpa"  # diffusers models: scaled_dot_product_attention or matmul-softmax


class VaeLossConfig(StrictModel):
    """AudioLDM App. C: reconstruction + KL (Gaussian constraint) + PatchGAN adversarial loss."""

    kl_weight: Annotated[float, Field(ge=0)] = 1e-6
    adversarial_weight: Annotated[float, Field(ge=0)] = 0.5
    adversarial_start: Count = 50_000  # steps of warm-up before the discriminator joins
    discriminator_channels: PositiveInt = 64
    discriminator_layers: PositiveInt = 3


class VaeConfig(StrictModel):
    """A diffusers AutoencoderKL over one-channel mels: r = 2^(len(block_out_channels) - 1)."""

    init: str | None = None  # an AutoencoderKL folder to fine-tune (e.g. an AudioLDM checkpoint's vae/)
    block_out_channels: list[PositiveInt] = [128, 256, 512]  # AudioLDM App. C: r = 4
    layers_per_block: PositiveInt = 2
    latent_channels: PositiveInt = 8  # AudioLDM App. C: C = 8
    norm_num_groups: PositiveInt = 32
    loss: VaeLossConfig = VaeLossConfig()
    # AudioLDM App. C: the VAE is trained with mixup too; here waveforms are mixed (§3.3 eq. 8) with a clip of
    # the loader's recent ones and the mel is computed from the mix (training.data.examples.MelExample).
    mixup: MixupConfig = MixupConfig()
    train: LoopConfig = LoopConfig()


class SchedulerConfig(StrictModel):
    """DDPM forward process; AudioLDM's defaults (§4.1: β 0.0015 → 0.0195, N = 1000).

    The paper calls its schedule linear; its released code (latent-diffusion's make_beta_schedule
    "linear") spaces √β linearly, which diffusers names "scaled_linear" and uses when it converts
    AudioLDM checkpoints. That is the default here, so a fine-tuned AudioLDM keeps its schedule.
    """

    num_train_timesteps: PositiveInt = 1000
    beta_start: Annotated[float, Field(gt=0)] = 0.0015
    beta_end: Annotated[float, Field(gt=0)] = 0.0195
    # squaredcos_cap_v2: the cosine schedule (Nichol & Dhariwal 2021) CLIPSonic §3 trains with
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "scaled_linear"
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"


class EncodersConfig(StrictModel):
    """Frozen encoders the conditioning needs (local folders, never downloaded)."""

    clap: str | None = None  # a transformers ClapModel folder
    clip: str | None = None  # a transformers CLIPModel folder


class UnetConfig(StrictModel):
    """A diffusers UNet2DConditionModel; AudioLDM-S: block_out_channels [128, 256, 384, 640]."""

    block_out_channels: list[PositiveInt] = [128, 256, 384, 640]
    layers_per_block: PositiveInt = 2
    attention_head_dim: PositiveInt = 8  # heads per attention layer (diffusers' historical name)
    # AudioLDM App. B: heads = the attention block's channels / c_h, so each level has its own count;
    # when set, it replaces attention_head_dim (AudioLDM-S: c_h = 32, AudioLDM-L: 64).
    head_channels: PositiveInt | None = None
    norm_num_groups: PositiveInt = 32
    cross_attention_dim: PositiveInt | None = None  # None: the conditioning's width


class LdmConfig(StrictModel):
    init: str | None = None  # a UNet2DConditionModel folder (or a pipeline's unet/) to fine-tune
    conditioning: str = "clap-audio"  # training.models.conditioning registry: clap-audio, clap-text, clip-image
    # clip-image only: the frames' pooled embedding (Make-An-Audio §4.3 V2A), or one random frame's
    # embedding per clip per step (CLIPSonic §2: "a CLIP-encoded frame, randomly selected from the video").
    clip_frames: Literal["mean", "random"] = "mean"
    encoders: EncodersConfig = EncodersConfig()
    unet: UnetConfig = UnetConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    cfg_dropout: Probability = 0.1  # condition dropped (→ the null condition) in training, for CFG
    crop_frames: PositiveInt | None = None  # None: data.crop_frames (the VAE's); the LDM may train on shorter windows
    batch_size: PositiveInt | None = None  # None: data.batch_size
    posterior: Literal["sample", "mean"] = (
        "sample"  # z = μ + σ·ε (AudioLDM, Stable Diffusion), or μ: for a VAE whose σ is still large
    )
    snr_gamma: Annotated[float, Field(gt=0)] | None = (
        None  # Min-SNR-γ loss weights (Hang et al. 2023; diffusers' --snr_gamma, 5.0)
    )
    latents: bool = True  # read pre-encoded latent shards (`t2a encode-latents`); False: encode on the fly
    # latent: diffusion on the VAE's latents (AudioLDM, Make-An-Audio); mel: on the normalised mel crops
    # themselves, no VAE (CLIPSonic §3; training/models/melspace.py). In mel space `latents` is not read.
    space: Literal["latent", "mel"] = "latent"
    train: LoopConfig = LoopConfig()


class VocoderLossConfig(StrictModel):
    """HiFi-GAN (Kong et al. 2020): LSGAN adversarial + feature matching + 45·mel L1."""

    mel_weight: Annotated[float, Field(gt=0)] = 45.0
    feature_weight: Annotated[float, Field(ge=0)] = 2.0
    discriminator_channels: PositiveInt = 16


class VocoderConfig(StrictModel):
    model: str | None = None  # a transformers SpeechT5HifiGan folder for sampling; None: Griffin-Lim
    griffin_lim_iters: PositiveInt = 32
    # `t2a train vocoder` (training/tasks/vocoder.py) → <run>/vocoder/model; point `model` there to use it.
    init: str | None = None  # a SpeechT5HifiGan folder to fine-tune (e.g. an AudioLDM pipeline's vocoder/)
    channels: PositiveInt = 128  # upsample_initial_channel (AudioLDM's HiFi-GAN: 1024)
    segment_frames: PositiveInt = 32  # mel frames per training segment (HiFi-GAN V1: 8192 samples / hop 256)
    loss: VocoderLossConfig = VocoderLossConfig()
    train: LoopConfig = LoopConfig()


class ClapTrainConfig(StrictModel):
    """Contrastive language–audio training of a transformers ClapModel (AudioLDM App. A eq. 12–14)."""

    init: str | None = None  # a ClapModel + ClapProcessor folder to fine-tune (local files only)
    shards: str | None = (
        None  # None: data.shards; e.g. `t2a shard --audio-only` output, for a CLAP that annotate then uses
    )
    batch_size: PositiveInt | None = None  # None: data.batch_size; contrastive training wants more negatives per batch
    config: dict[str, Any] | None = (
        None  # without init: transformers.ClapConfig arguments over the tiny demo size (text_config, audio_config merged)
    )
    window_seconds: Annotated[float, Field(gt=0, le=60)] | None = (
        None  # audio per example; None: the extractor's max_length_s (10 s)
    )
    features: Literal["loader", "step"] = (
        "loader"  # where the CLAP mel features are computed: example (workers) or train_step
    )
    max_logit_scale: Annotated[float, Field(gt=0)] = 100.0  # LAION-CLAP clamps exp(logit scale) to 100
    train: LoopConfig = LoopConfig()


# --- the discrete-token generators (training/models/vq.py, token_ar.py, token_dd.py) -----------------


class VggishishConfig(StrictModel):
    """`t2a train vggishish`: a small VGG-style mel classifier on the corpus labels, whose per-scale
    features are the codebook's perceptual term (Li et al. 2023 §2.1 eq. 4, "VGGish-ish")."""

    channels: list[PositiveInt] = [64, 128, 256, 512]  # one block (2 convs + 2x2 max-pool) per width: one scale each
    crop_frames: PositiveInt | None = None  # None: data.crop_frames
    train: LoopConfig = LoopConfig()


class CodebookLossConfig(StrictModel):
    """Diffsound §III-B eq. 2–3 / Li et al. 2023 §2.1 eq. 3–4: reconstruction + codebook + β·commitment,
    a patch discriminator joining after `adversarial_start` steps, an optional perceptual term."""

    reconstruction: Literal["l1", "l2"] = "l1"  # Diffsound eq. 2: ‖s − ŝ‖₁; Li et al. eq. 3: ‖x̂ − x‖²
    beta: Annotated[float, Field(ge=0)] = 1.0  # commitment weight β (Diffsound eq. 2: 1; Li et al. eq. 3)
    adversarial_weight: Annotated[float, Field(ge=0)] = 0.8  # λ_d (Diffsound §VI-B: 0.8)
    adversarial_start: Count = 0  # steps with the adversarial part zeroed (Diffsound §VI-B; Li et al. §3.2)
    adaptive: bool = True  # λ_d scaled by ‖∇rec‖/‖∇adv‖ at the decoder's last layer (taming-transformers)
    discriminator_channels: PositiveInt = 64
    discriminator_layers: PositiveInt = 3
    perceptual_weight: Annotated[float, Field(ge=0)] = 0.0  # Li et al. eq. 4's Σ_s term; 0: none (Diffsound)
    perceptual: str | None = None  # a `t2a train vggishish` model folder (local)


class CodebookConfig(StrictModel):
    """A diffusers VQModel over one-channel mels: len(block_out_channels) − 1 halvings of time and frequency."""

    init: str | None = None  # a VQModel folder to fine-tune
    codebook_size: PositiveInt = 256  # K (Diffsound §VI-B: 256; Li et al. §3.2: |Z| = 1024)
    code_dim: PositiveInt = 256  # n_z (Diffsound §VI-B: 256)
    block_out_channels: list[PositiveInt] = [128, 128, 256, 256, 512]  # SpecVQGAN's ch_mult (1,1,2,2,4): /16
    layers_per_block: PositiveInt = 2
    norm_num_groups: PositiveInt = 32
    restart_every: Count = 100  # steps between dead-code restarts; 0: never
    dead_usage: Annotated[float, Field(ge=0)] = 1e-3  # a code whose usage share (EMA) is below this is dead
    usage_decay: Annotated[float, Field(ge=0, lt=1)] = 0.99  # EMA of the per-batch code histogram
    loss: CodebookLossConfig = CodebookLossConfig()
    train: LoopConfig = LoopConfig()


class TextFeaturesConfig(StrictModel):
    """The frozen text encoder whose hidden states condition a token generator (Li et al. 2023 §2.2, §3.2:
    BERT, CLIP or CLAP text, at most 30 tokens; Diffsound §IV uses CLIP's)."""

    kind: Literal["clap", "clip", "bert"] = "clap"
    model: str | None = None  # a local ClapModel / CLIPModel / BertModel (AutoModel) folder with its tokenizer
    max_tokens: PositiveInt = 30  # Li et al. 2023 §3.2


class ArConfig(StrictModel):
    """Li et al. 2023 §2.3: a GPT-2 (transformers) over column-major codebook indices, text states as prefix."""

    text: TextFeaturesConfig = TextFeaturesConfig()
    n_layer: PositiveInt = 24
    n_head: PositiveInt = 16
    n_embd: PositiveInt = 1024  # Li et al. 2023 §3.2: hidden dimension 1024
    dropout: Probability = 0.1
    cfg_dropout: Probability = 0.0  # text dropped (→ the states of "") in training: guidance at sampling
    top_k: PositiveInt = 512  # Li et al. 2023 §3.2: K = 512
    guidance: Annotated[float, Field(ge=0)] = 1.0  # 1: no guidance
    mbtg: Probability = 0.0  # share of training texts replaced by Diffsound's MBTG of the labels (§IV-C)
    batch_size: PositiveInt | None = None  # None: data.batch_size
    train: LoopConfig = LoopConfig()


class DdConfig(StrictModel):
    """Diffsound §IV: discrete diffusion over codebook indices, a transformer denoiser with cross-attention."""

    text: TextFeaturesConfig = TextFeaturesConfig(kind="clip")
    transition: Literal["uniform", "mask", "mask-uniform"] = "mask-uniform"  # §VI-B: mask and uniform
    timesteps: PositiveInt = 100  # T (§VI-B)
    final_mask: Probability = 0.9  # γ̄_T (§VI-B, Table IV); "mask" uses 1, "uniform" 0
    aux_weight: Annotated[float, Field(ge=0)] = 1e-4  # λ of eq. 23 (§VI-B)
    layers: PositiveInt = 19  # §VI-B 3): 19 layers, 16 heads, dimension 1024
    heads: PositiveInt = 16
    dim: PositiveInt = 1024
    dropout: Probability = 0.0
    cfg_dropout: Probability = 0.0
    guidance: Annotated[float, Field(ge=0)] = 1.0
    steps: PositiveInt = 100  # sampling steps: stride T / steps (Algorithm 2's fast inference)
    mbtg: Probability = 0.0  # share of training texts replaced by MBTG of the labels (§IV-C, Algorithm 3)
    batch_size: PositiveInt | None = None
    train: LoopConfig = LoopConfig()


class PriorConfig(StrictModel):
    """`t2a train prior`: CLIPSonic-SD's diffusion prior (training/models/prior.py), CLIPSonic App. values."""

    width: PositiveInt = 256  # transformer width (the paper's: CLIP's, 768 for ViT-L/14)
    layers: PositiveInt = 4  # the paper's: 12
    heads: PositiveInt = 4
    num_train_timesteps: PositiveInt = 1000  # CLIPSonic App.: cosine schedule, 1000 training steps
    sample_steps: PositiveInt = 64  # CLIPSonic App.: 64 steps at inference
    candidates: PositiveInt = 2  # CLIPSonic App.: two draws per text, the closer to it kept
    cfg_dropout: Probability = 0.1  # CLIPSonic App.: text replaced by the learnable placeholder 10 % of the time
    batch_size: PositiveInt = 32  # CLIPSonic §3
    # the held-out split gap.json measures the modality gap on (CLIPSonic Table 2 reports the test set);
    # None: data.valid_split, which validation during training always uses
    gap_split: str | None = None
    # CLIPSonic App.: AdamW, lr 1e-4, weight decay 0.06, EMA 0.9999; ~200 k steps to convergence
    train: LoopConfig = LoopConfig(
        steps=200_000, optim=OptimConfig(lr=1e-4, weight_decay=0.06), ema_decay=0.9999, checkpoint_every=10_000
    )


class InpaintConfig(StrictModel):
    """`t2a train inpaint`: Make-An-Audio §4.2's inpainting fine-tune of a trained LDM (training/tasks/inpaint.py)."""

    init: str | None = None  # the LDM model folder to start from; None: <run>/ldm/model
    # training/data/masks.py families, one drawn per example: LaMa's thin / medium / thick, wav2vec 2.0's frame
    masks: list[Literal["thin", "medium", "thick", "frame"]] = ["thin", "medium", "thick", "frame"]
    p: Annotated[float, Field(gt=0, lt=1)] = 0.5  # frame masks' probability (Make-An-Audio Table 2: 0.3, 0.5, 0.7)
    span: PositiveInt = 10  # frame masks' span M, in latent rows (wav2vec 2.0: 10)
    train: LoopConfig = LoopConfig()


class SampleConfig(StrictModel):
    prompts: list[str] = []
    steps: PositiveInt = 50
    guidance: Annotated[float, Field(ge=0)] = 2.0
    sampler: Literal["ddim", "dpm-solver++", "ddpm"] = "ddim"
    # DDIM η (Song et al. 2021 eq. 16): 0 is deterministic DDIM, 1 adds DDPM-like noise at every step; only the
    # ddim sampler takes it. AudioLDM's paper gives no η; its released code samples with η = 1 (audioldm-*.yaml).
    eta: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    seconds: Annotated[float, Field(gt=0)] | None = None  # None: the training window's length
    seed: Count = 0
    per_prompt: PositiveInt = 1

    @model_validator(mode="after")
    def _eta_is_ddim(self) -> SampleConfig:
        if self.eta and self.sampler != "ddim":
            raise ValueError(f"eta (DDIM η) is for sampler ddim only; with sampler {self.sampler} set eta: 0")
        return self


class TrainConfig(StrictModel):
    # Which generator family the config trains: "ldm" (the mel VAE + latent diffusion of training/tasks/vae.py
    # and ldm.py). Presets (training/configs/*.yaml) name theirs; tests/training/test_presets.py trains one
    # step of every "ldm" preset.
    generator: Literal["ldm", "ar", "dd"] = "ldm"  # also what `t2a sample --config` samples from
    preset: str | None = None  # training/configs/<preset>.yaml, whose values this file's override (load_config)
    run: OutputDir  # run/vae, run/latents, run/ldm, run/samples
    seed: Count = 0
    device: Device = "auto"
    data: DataConfig
    vae: VaeConfig = VaeConfig()
    ldm: LdmConfig = LdmConfig()
    vocoder: VocoderConfig = VocoderConfig()
    sample: SampleConfig = SampleConfig()
    clap: ClapTrainConfig = ClapTrainConfig()
    vggishish: VggishishConfig = VggishishConfig()
    codebook: CodebookConfig = CodebookConfig()
    ar: ArConfig = ArConfig()
    dd: DdConfig = DdConfig()
    prior: PriorConfig = PriorConfig()
    inpaint: InpaintConfig = InpaintConfig()

    @property
    def clap_data(self) -> DataConfig:
        """The data the CLAP trains and is validated on: data with clap.shards and clap.batch_size, when given."""
        return self._data_with(shards=self.clap.shards, batch_size=self.clap.batch_size)

    @property
    def ldm_data(self) -> DataConfig:
        """The data the LDM trains on: data with ldm.crop_frames and ldm.batch_size, when given."""
        return self._data_with(crop_frames=self.ldm.crop_frames, batch_size=self.ldm.batch_size)

    def _data_with(self, **overrides: Any) -> DataConfig:
        """`data` with a model's own settings where it gives them (None: the shared one)."""
        return self.data.model_copy(update={key: value for key, value in overrides.items() if value is not None})

    @property
    def vae_dir(self) -> Path:
        return self.run / "vae"

    @property
    def ldm_dir(self) -> Path:
        return self.run / "ldm"

    @property
    def latents_dir(self) -> Path:
        return self.run / "latents"

    @property
    def vocoder_dir(self) -> Path:
        return self.run / "vocoder"

    @property
    def inpaint_dir(self) -> Path:
        return self.run / "inpaint"

    @property
    def prior_dir(self) -> Path:
        return self.run / "prior"

    @property
    def clap_dir(self) -> Path:
        return self.run / "clap"

    @property
    def vggishish_dir(self) -> Path:
        return self.run / "vggishish"

    @property
    def codebook_dir(self) -> Path:
        return self.run / "vq"

    @property
    def tokens_dir(self) -> Path:
        return self.run / "tokens"

    @property
    def ar_dir(self) -> Path:
        return self.run / "ar"

    @property
    def dd_dir(self) -> Path:
        return self.run / "dd"

    @property
    def samples_dir(self) -> Path:
        return self.run / "samples"


PRESETS = Path(__file__).parent / "configs"  # training/configs/<name>.yaml: one preset per paper
# The keys whose values are paths, resolved against the folder of the file that gives them.
_PATH_KEYS = (
    ("run",),
    ("data", "shards"),
    ("vae", "init"),
    ("ldm", "init"),
    ("ldm", "encoders", "clap"),
    ("ldm", "encoders", "clip"),
    ("vocoder", "model"),
    ("vocoder", "init"),
    ("clap", "init"),
    ("clap", "shards"),
)


def preset_path(name: str) -> Path:
    """training/configs/<name>.yaml; an unknown name is a ConfigError listing the presets."""
    path = PRESETS / f"{name}.yaml"
    if "/" in name or not path.is_file():
        names = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
        raise ConfigError(f"unknown preset {name!r}; presets: {names}")
    return path


def load_config(path: str | Path | None = None, preset: str | None = None) -> TrainConfig:
    """Read and validate a training config; relative paths resolve against the file's folder.

    `preset` (or a `preset:` key in the file): the values of training/configs/<preset>.yaml, with the
    file's own values over them (mappings merged key by key); the preset's relative paths resolve
    against training/configs/, the file's against its own folder. Only a preset: the preset as it is.
    The trainer's window: data.crop_frames, else the profile's `train_frames` (CLIPSonic §3: 2-s
    windows cut from the stored 10-s mel), else the whole stored mel.
    """
    if path is None and preset is None:
        raise ConfigError("give a training config (--config) or a preset (--preset)")
    raw, base = {}, PRESETS
    if path is not None:
        path = Path(path)
        raw = load_yaml(path) or {}  # a key given twice is an error, not last-one-wins
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a training config is a mapping of keys, got {type(raw).__name__}")
        base = path.resolve().parent
        raw = _absolute_paths(raw, base)
    named = preset or raw.get("preset")
    if named is not None:
        if preset is not None and raw.get("preset") not in (None, preset):
            raise ConfigError(f"{path}: preset {raw['preset']!r} in the file, --preset {preset!r} given; give one")
        preset_file = preset_path(str(named))
        preset_raw = load_yaml(preset_file) or {}
        raw = _merge(_absolute_paths(preset_raw, PRESETS), {**raw, "preset": str(named)})
    source = str(path) if path is not None else str(preset_path(str(named)))
    try:
        config = TrainConfig.model_validate(raw, context={"base_dir": base})
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, raw, source)) from None
    data = _local(config.data, base)
    if data.crop_frames is None:
        from pipelines.core.features import PROFILES

        window = PROFILES.get(data.profile).train_frames if data.profile in PROFILES else None
        data = data.model_copy(update={"crop_frames": window})
    return config.model_copy(
        update={
            "run": Path(os.path.normpath(config.run)),
            "data": data,
            "vae": _init(config.vae, base),
            "ldm": _ldm(config.ldm, base),
            "inpaint": config.inpaint.model_copy(update={"init": resolve(config.inpaint.init, base)}),
            "vocoder": _vocoder(config.vocoder, base),
            "codebook": config.codebook.model_copy(
                update={
                    "init": resolve(config.codebook.init, base),
                    "loss": config.codebook.loss.model_copy(
                        update={"perceptual": resolve(config.codebook.loss.perceptual, base)}
                    ),
                }
            ),
            "ar": config.ar.model_copy(update={"text": _text(config.ar.text, base)}),
            "dd": config.dd.model_copy(update={"text": _text(config.dd.text, base)}),
            "clap": config.clap.model_copy(
                update={"init": resolve(config.clap.init, base), "shards": resolve(config.clap.shards, base)}
            ),
        }
    )


def _absolute_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """A copy of a raw config with its relative path values made absolute against `base`."""
    import copy

    raw = copy.deepcopy(raw)
    for keys in _PATH_KEYS:
        node = raw
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            node[keys[-1]] = resolve(node[keys[-1]], base)
    return raw


def _merge(under: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over`'s values on top of `under`'s; mappings merge key by key, anything else is replaced."""
    out = dict(under)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def resolve(location: str | None, base: Path) -> str | None:
    """A local path made absolute against `base`; a URL (s3://, gs://, http(s)://) as it is."""
    if location is None or "://" in location:
        return location
    path = Path(location).expanduser()
    return os.path.normpath(path if path.is_absolute() else (base / path).absolute())


def _local(data: DataConfig, base: Path) -> DataConfig:
    return data.model_copy(update={"shards": resolve(data.shards, base)})


def _init(vae: VaeConfig, base: Path) -> VaeConfig:
    return vae.model_copy(update={"init": resolve(vae.init, base)})


def _ldm(ldm: LdmConfig, base: Path) -> LdmConfig:
    encoders = ldm.encoders.model_copy(
        update={"clap": resolve(ldm.encoders.clap, base), "clip": resolve(ldm.encoders.clip, base)}
    )
    return ldm.model_copy(update={"init": resolve(ldm.init, base), "encoders": encoders})


def _text(text: TextFeaturesConfig, base: Path) -> TextFeaturesConfig:
    return text.model_copy(update={"model": resolve(text.model, base)})


def _vocoder(vocoder: VocoderConfig, base: Path) -> VocoderConfig:
    return vocoder.model_copy(update={"model": resolve(vocoder.model, base), "init": resolve(vocoder.init, base)})


def resolve_device(name: str) -> str:
    """ "auto" → "cuda" when torch sees a GPU, else "cpu"; any other name as given."""
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name
