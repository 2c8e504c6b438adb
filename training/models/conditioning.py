"""Conditioning modes by name (`ldm.conditioning`): what the UNet is trained on and sampled with.

    clap-audio   AudioLDM §3.2: train on the clip's CLAP audio embedding E^x (eq. 3), sample with
                 the prompt's CLAP text embedding E^y; one L2-normalised vector through the UNet's class
                 embedding (App. B: FiLM, no cross-attention). Null: the embedding of "", which is what
                 diffusers' AudioLDMPipeline uses as its negative prompt, so guidance agrees with it.
    clap-text    Make-An-Audio §3.3 / App. E.2: the frozen CLAP text encoder's token states of the
                 caption, padded to 77 tokens (App. B Table 6), by cross-attention. Null: the states of "".
    clip-image   CLIPSonic §2 / Make-An-Audio §4.3: the clip's pooled CLIP frame embedding
                 (`ldm.clip_frames: mean`, Make-An-Audio §4.3), or one frame's embedding drawn at random
                 per clip per step (`random`, CLIPSonic §2), as one token by cross-attention; prompts through CLIP's text tower (CLIPSonic-ZS zero-shot modality
                 transfer). L2-normalised (Make-An-Audio App. E.3: the normalised condition trains better).
                 Null: a zero token.

Encoders are frozen, in eval mode, read from local folders only. A conditioner keeps the text tower it
samples with, so training/models/pipeline.py can save it beside the UNet (text_encoder/, tokenizer/).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from torch import Tensor

from pipelines.core.config import ConfigError
from pipelines.core.registry import Registry
from training.config import EncodersConfig, LdmConfig

CONDITIONERS: Registry[type] = Registry("conditioning mode")
MAX_TOKENS = 77  # Make-An-Audio App. B Table 6: CLAP text encoder token length
TEXT_ENCODER, TOKENIZER = "text_encoder", "tokenizer"  # the diffusers pipeline's component folders
CLIP = "clip"  # clip-image: the whole CLIPModel folder, for image and video queries


def build_conditioner(cfg: LdmConfig, device: str | torch.device = "cpu"):
    """The `cfg.conditioning` mode with its frozen encoders from `cfg.encoders`, on `device`."""
    mode = CONDITIONERS.get(cfg.conditioning)
    if cfg.clip_frames != "mean" and mode is not ClipImage:
        raise ConfigError(
            f"ldm.clip_frames applies to clip-image conditioning; {cfg.conditioning!r} does not read frames: remove it"
        )
    conditioner = mode.from_encoders(cfg.encoders, device)
    if mode is ClipImage:
        conditioner.frames = cfg.clip_frames
    return conditioner


def drop_condition(condition: Tensor, null: Tensor, probability: float, generator: torch.Generator) -> Tensor:
    """Classifier-free guidance training (AudioLDM §3.4, Make-An-Audio §3.6 eq. 2): each row becomes the null
    row with `probability`. B uniform draws from `generator` (whatever the probability), on its device."""
    rows = condition.shape[0]
    drop = torch.rand(rows, generator=generator, device=generator.device) < probability
    drop = drop.to(condition.device).view(rows, *([1] * (condition.dim() - 1)))
    return torch.where(drop, null.to(condition.device, condition.dtype), condition)


class _TextTower:
    """A frozen text encoder + tokenizer on a device; the modes below say what they take from it."""

    name: str
    kind: str
    tokens: int | None

    def __init__(self, encoder: transformers.PreTrainedModel, tokenizer, source: str | None = None):
        self.encoder = encoder.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.source = source  # the folder it was read from (recorded in t2a.json)
        self._null: Tensor | None = None

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def to(self, device: torch.device | str):
        self.encoder.to(device)
        self._null = None if self._null is None else self._null.to(device)
        return self

    def null(self, batch_size: int) -> Tensor:
        if self._null is None:
            self._null = self._null_row()
        return self._null.expand(batch_size, *self._null.shape[1:]).clone()

    def save(self, folder: Path) -> None:
        """text_encoder/ and tokenizer/ in `folder` (a diffusers pipeline's layout)."""
        self.encoder.save_pretrained(Path(folder) / TEXT_ENCODER)
        self.tokenizer.save_pretrained(Path(folder) / TOKENIZER)

    def _tokenize(self, texts: list[str], length: int | None) -> dict[str, Tensor]:
        padding = "max_length" if length else "longest"
        tokens = self.tokenizer(
            list(texts),
            padding=padding,
            truncation=True,
            max_length=length or self.tokenizer.model_max_length,
            return_tensors="pt",
        )
        return {
            "input_ids": tokens["input_ids"].to(self.device),
            "attention_mask": tokens["attention_mask"].to(self.device),
        }

    def _null_row(self) -> Tensor:
        return self.from_prompts([""])


@CONDITIONERS.register("clap-audio")
class ClapAudio(_TextTower):
    name, kind, tokens = "clap-audio", "class", None

    @property
    def dim(self) -> int:
        return self.encoder.config.projection_dim

    @classmethod
    def from_encoders(cls, encoders: EncodersConfig, device: str | torch.device = "cpu") -> ClapAudio:
        folder = _folder(encoders.clap, "ldm.encoders.clap", cls.name, "a transformers ClapModel folder")
        return cls(*load_clap_text(folder), source=str(folder)).to(device)

    @classmethod
    def from_folder(cls, folder: Path, device: str | torch.device = "cpu") -> ClapAudio:
        return cls(*load_clap_text(Path(folder) / TEXT_ENCODER, Path(folder) / TOKENIZER), source=str(folder)).to(
            device
        )

    def from_batch(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> Tensor:
        embedding = _batch_tensor(batch, "clap_audio", self.name).to(self.device)
        if embedding.shape[-1] != self.dim:
            raise ValueError(
                f"the batch's clap_audio has width {embedding.shape[-1]} but ldm.encoders.clap projects to {self.dim}: train with the CLAP that annotated the corpus"
            )
        return F.normalize(embedding, dim=-1)  # mixup (AudioLDM §3.3) blends two unit vectors: back onto the sphere

    @torch.no_grad()
    def from_prompts(self, prompts: list[str]) -> Tensor:
        output = self.encoder(**self._tokenize(prompts, None))
        return F.normalize(output.text_embeds.float(), dim=-1)  # as AudioLDMPipeline._encode_prompt

    def unet_kwargs(self, condition: Tensor) -> dict[str, Tensor | None]:
        return {"encoder_hidden_states": None, "class_labels": condition}


@CONDITIONERS.register("clap-text")
class ClapText(ClapAudio):
    name, kind = "clap-text", "cross"

    def __init__(self, encoder, tokenizer, source: str | None = None):
        super().__init__(encoder, tokenizer, source)
        self.tokens = min(MAX_TOKENS, tokenizer.model_max_length)

    @property
    def dim(self) -> int:
        return self.encoder.config.hidden_size

    def from_batch(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> Tensor:
        if "caption" not in batch:
            raise ValueError("the batch has no caption: clap-text conditioning trains on the samples' captions")
        return self.from_prompts(list(batch["caption"]))

    @torch.no_grad()
    def from_prompts(self, prompts: list[str]) -> Tensor:
        """[B, tokens, hidden] token states; padded positions are exact zeros (unet_kwargs masks them)."""
        tokens = self._tokenize(prompts, self.tokens)
        states = self.encoder(**tokens).last_hidden_state.float()
        return states * tokens["attention_mask"][..., None]

    def unet_kwargs(self, condition: Tensor) -> dict[str, Tensor | None]:
        # The mask travels inside the condition (zero rows = padding), so the condition stays one tensor that
        # drop_condition and guidance batch like any other; a real token state is never exactly zero.
        mask = (condition != 0).any(dim=-1).to(condition.dtype)
        return {"encoder_hidden_states": condition, "encoder_attention_mask": mask}


@CONDITIONERS.register("clip-image")
class ClipImage(_TextTower):
    name, kind, tokens = "clip-image", "cross", 1
    frames = "mean"  # ldm.clip_frames: "mean" (Make-An-Audio §4.3) or "random" (CLIPSonic §2)

    @property
    def dim(self) -> int:
        return self.encoder.config.projection_dim

    clip_folder: Path | None = None  # the whole CLIPModel + CLIPProcessor: image and video queries

    @classmethod
    def from_encoders(cls, encoders: EncodersConfig, device: str | torch.device = "cpu") -> ClipImage:
        folder = _folder(encoders.clip, "ldm.encoders.clip", cls.name, "a transformers CLIPModel folder")
        conditioner = cls(*load_clip_text(folder), source=str(folder)).to(device)
        conditioner.clip_folder = folder if _model_type(folder) == "clip" else None
        return conditioner

    @classmethod
    def from_folder(cls, folder: Path, device: str | torch.device = "cpu") -> ClipImage:
        conditioner = cls(
            *load_clip_text(Path(folder) / TEXT_ENCODER, Path(folder) / TOKENIZER), source=str(folder)
        ).to(device)
        clip = Path(folder) / CLIP
        conditioner.clip_folder = clip if (clip / "config.json").is_file() else None
        return conditioner

    def save(self, folder: Path) -> None:
        """text_encoder/, tokenizer/ and clip/ (the CLIPModel + processor the image queries encode with)."""
        super().save(folder)
        if self.clip_folder is not None and Path(self.clip_folder).resolve() != (Path(folder) / CLIP).resolve():
            shutil.copytree(self.clip_folder, Path(folder) / CLIP, dirs_exist_ok=True)

    @torch.no_grad()
    def from_images(self, images: list[bytes]) -> Tensor:
        """[N, 1, D]: CLIPSonic-IQ's q_img of each picture (JPEG/PNG bytes), embedded exactly as the
        annotate stage embeds the corpus frames (pipelines.annotate.encoders.clip)."""
        embeddings = self.image_encoder().embed_images(images)
        return torch.from_numpy(embeddings).float().to(self.device)[:, None]

    def image_encoder(self):
        if self.clip_folder is None:
            raise ConfigError(
                "image and video queries need the CLIP image tower: this model folder has no clip/ (trained before "
                "image queries existed); retrain, or copy the ldm.encoders.clip CLIPModel folder to <model>/clip"
            )
        if getattr(self, "_images", None) is None:
            from pipelines.annotate.encoders.base import ModelLoadError
            from pipelines.annotate.encoders.clip import load_clip
            from pipelines.annotate.encoders.config import ClipConfig

            try:
                self._images = load_clip(ClipConfig(model=str(self.clip_folder)), self.device.type)
            except ModelLoadError as error:
                raise ConfigError(str(error)) from None
        return self._images

    def from_batch(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> Tensor:
        """[B, 1, D]: the pooled frames (`frames` "mean"), or one frame per clip drawn from `generator`
        ("random"; B draws on the generator's device, whatever the frame counts)."""
        if self.frames == "random":
            embedding = self._random_frames(batch, generator)
        elif "clip_image_mean" in batch:
            embedding = _batch_tensor(batch, "clip_image_mean", self.name)
        else:  # Make-An-Audio §4.3: the frames' pooled embedding
            embedding = torch.stack([f.mean(dim=0) for f in _frame_list(batch, self.name)])
        if embedding.shape[-1] != self.dim:
            raise ValueError(
                f"the batch's CLIP embeddings have width {embedding.shape[-1]} but ldm.encoders.clip projects to {self.dim}: use the CLIP that annotated the corpus"
            )
        return F.normalize(embedding.to(self.device), dim=-1)[:, None]  # [B, 1, D]

    def _random_frames(self, batch: dict[str, Any], generator: torch.Generator | None) -> Tensor:
        if generator is None:
            raise ValueError("ldm.clip_frames random draws a frame per clip: from_batch needs a generator")
        frames = _frame_list(batch, self.name)
        draws = torch.rand(len(frames), generator=generator, device=generator.device).cpu()
        # CLIPSonic §2: q_img of one randomly selected frame (the annotate stage keeps the frames ingest picked)
        return torch.stack([f[min(int(u * len(f)), len(f) - 1)] for f, u in zip(frames, draws)])

    @torch.no_grad()
    def from_prompts(self, prompts: list[str]) -> Tensor:
        output = self.encoder(**self._tokenize(prompts, None))
        return F.normalize(output.text_embeds.float(), dim=-1)[:, None]  # CLIPSonic-ZS: q_text for q_img

    def unet_kwargs(self, condition: Tensor) -> dict[str, Tensor | None]:
        return {"encoder_hidden_states": condition}

    def _null_row(self) -> Tensor:
        return torch.zeros(1, 1, self.dim, device=self.device)


def load_clap_text(
    folder: Path, tokenizer_folder: Path | None = None
) -> tuple[transformers.ClapTextModelWithProjection, Any]:
    """CLAP's text tower with its projection (text_embeds = ClapModel.get_text_features before its L2 norm),
    from a ClapModel folder or a saved ClapTextModelWithProjection; the tokenizer capped to the positions."""
    folder = Path(folder)
    if _model_type(folder) == "clap":
        clap = transformers.ClapModel.from_pretrained(folder, local_files_only=True)
        encoder = transformers.ClapTextModelWithProjection(clap.config.text_config)
        encoder.text_model.load_state_dict(clap.text_model.state_dict())
        encoder.text_projection.load_state_dict(clap.text_projection.state_dict())
    else:
        encoder = transformers.ClapTextModelWithProjection.from_pretrained(folder, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_folder or folder, local_files_only=True)
    text = encoder.config
    # RoBERTa numbers positions after the padding index: max_position_embeddings - (pad + 1) tokens fit.
    tokenizer.model_max_length = min(tokenizer.model_max_length, text.max_position_embeddings - text.pad_token_id - 1)
    return encoder, tokenizer


def load_clip_text(
    folder: Path, tokenizer_folder: Path | None = None
) -> tuple[transformers.CLIPTextModelWithProjection, Any]:
    """CLIP's text tower with its projection, from a CLIPModel folder or a saved CLIPTextModelWithProjection."""
    folder = Path(folder)
    if _model_type(folder) == "clip":
        clip = transformers.CLIPModel.from_pretrained(folder, local_files_only=True)
        config = clip.config.text_config
        config.projection_dim = clip.config.projection_dim  # CLIPConfig keeps it outside text_config
        encoder = transformers.CLIPTextModelWithProjection(config)
        encoder.text_model.load_state_dict(clip.text_model.state_dict())
        encoder.text_projection.load_state_dict(clip.text_projection.state_dict())
    else:
        encoder = transformers.CLIPTextModelWithProjection.from_pretrained(folder, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_folder or folder, local_files_only=True)
    tokenizer.model_max_length = min(tokenizer.model_max_length, encoder.config.max_position_embeddings)
    return encoder, tokenizer


def _model_type(folder: Path) -> str:
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError) as error:
        raise ConfigError(f"{folder}: cannot read the encoder's config.json: {error}") from None


def _folder(path: str | None, key: str, mode: str, what: str) -> Path:
    if path is None:
        raise ConfigError(
            f"{key} is not set: conditioning {mode!r} needs {what} (a local path; `t2a demo-models` builds tiny ones)"
        )
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{key}: no model at {folder} (config.json not found); point it at {what}")
    return folder


def _frame_list(batch: dict[str, Any], mode: str) -> list[Tensor]:
    """The batch's clip_image rows as [frames_i, D] tensors (collate keeps clips of differing frame counts as a list)."""
    if "clip_image" not in batch:
        raise ValueError(
            f"the batch has no 'clip_image': conditioning {mode!r} needs the frames' embeddings in the corpus shards (or latent shards)"
        )
    frames = batch["clip_image"]
    rows = list(frames) if isinstance(frames, (list, tuple)) else list(torch.as_tensor(frames))
    rows = [torch.as_tensor(row).float().reshape(-1, torch.as_tensor(row).shape[-1]) for row in rows]
    if any(len(row) == 0 for row in rows):
        raise ValueError("a clip in the batch has no frame embedding (clip_image is empty)")
    return rows


def _batch_tensor(batch: dict[str, Any], key: str, mode: str) -> Tensor:
    if key not in batch:
        raise ValueError(
            f"the batch has no {key!r}: conditioning {mode!r} needs it in the corpus shards (or latent shards)"
        )
    return torch.as_tensor(batch[key]).float()


class ClapAudioFeatures:
    """The CPU half of a CLAP audio embedding: a waveform → its 48-kHz windows (annotate's: repeat-padded, or
    evenly spaced over a longer clip) → the ClapFeatureExtractor's input features [n, 1, frames, mels].
    Picklable (the extractor is loaded where it runs), so the loader's workers can compute it."""

    def __init__(self, folder: str | Path):
        self.folder = str(folder)
        self._extractor = None

    @property
    def extractor(self):
        if self._extractor is None:
            self._extractor = transformers.ClapFeatureExtractor.from_pretrained(self.folder, local_files_only=True)
        return self._extractor

    def __call__(self, wave, sample_rate: int):
        import numpy as np

        from pipelines.annotate.encoders import audio_windows

        extractor = self.extractor
        audio = np.asarray(wave.cpu() if isinstance(wave, Tensor) else wave, dtype=np.float32)
        windows = audio_windows(audio, sample_rate, extractor.sampling_rate, int(extractor.nb_max_samples))
        # Inputs are exactly one window long: neither truncation nor padding applies (as annotate's backend)
        features = extractor(
            list(windows),
            sampling_rate=extractor.sampling_rate,
            max_length=int(extractor.nb_max_samples),
            truncation="rand_trunc",
            padding="repeatpad",
            return_tensors="np",
        )
        return features["input_features"].astype(np.float32)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_extractor": None}


class ClapAudioEmbedder:
    """The conditioning CLAP's audio tower (`ldm.encoders.clap`, a whole ClapModel folder), embedding a
    waveform as annotate embeds a clip (pipelines.annotate.encoders: 48-kHz windows of the model's
    max_length_s, window embeddings averaged, L2-normalised). AudioLDM §3.2 conditions on E^x of the clip
    itself, so a reprogrammed or mixed clip (§3.3) gets the embedding of its new audio. The input features
    (`features`, CPU) may come from the loader; `embed_features` runs the tower on the device."""

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu"):
        folder = Path(folder)
        if _model_type(folder) != "clap":
            raise ConfigError(
                f"ldm.encoders.clap {folder}: recomputing CLAP audio embeddings needs a whole ClapModel folder"
            )
        model = transformers.ClapModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        if model.config.audio_config.enable_fusion:
            raise ConfigError(f"ldm.encoders.clap {folder}: a fused CLAP's audio embedding is not recomputed here")
        self.model, self.device = model, torch.device(device)
        self.features = ClapAudioFeatures(folder)

    @torch.no_grad()
    def embed_features(self, features) -> Tensor:
        """[n, 1, frames, mels] window features → the clip's L2-normalised embedding [dim] (on the CPU)."""
        features = torch.as_tensor(features, dtype=torch.float32).to(self.device)
        is_longer = torch.zeros(features.shape[0], 1, dtype=torch.bool, device=self.device)
        output = self.model.get_audio_features(input_features=features, is_longer=is_longer)
        windows = getattr(output, "pooler_output", output).float()
        return F.normalize(F.normalize(windows, dim=-1).mean(dim=0), dim=-1).cpu()

    def __call__(self, wave, sample_rate: int) -> Tensor:
        """A mono waveform at `sample_rate` → its L2-normalised CLAP audio embedding [dim]."""
        return self.embed_features(self.features(wave, sample_rate))
