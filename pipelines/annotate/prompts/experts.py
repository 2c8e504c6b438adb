"""Make-An-Audio's captioning expert: N caption candidates per clip from an audio-to-text model.

Make-An-Audio (§3.2.1, App. E.2) distils pseudo prompts from
a captioning expert and a retrieval expert (pipelines/annotate/prompts/retrieval.py); CLAP then keeps the
candidate that scores best. The paper's captioner is a CNN encoder + GRU decoder; here it is any
transformers audio-to-text generation model (AutoProcessor + AutoModelForSpeechSeq2Seq) in a local
folder or the local Hugging Face cache — e.g. Whisper fine-tuned for captioning.

Whisper-like models see one fixed window (30 s): longer clips are captioned from their first
window, and clips are batched. Models without a fixed window are run clip by clip, since padding
to the longest clip of a batch would change the others' results. Beam search is deterministic;
sampling is seeded per clip key. Either way a clip's candidates do not depend on its batch.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch
from apache_beam.ml.inference.base import ModelHandler

from pipelines.annotate.prompts.config import CaptioningConfig
from pipelines.core.config import ConfigError
from pipelines.core.features.mel import RESAMPLE_QUALITY, to_mono
from pipelines.core.io import content_sha256
from pipelines.core.tools import package_version


class ExpertLoadError(ConfigError):
    """An expert model that cannot be loaded as configured; the message says what to change."""


# --- locating and fingerprinting the model ------------------------------------------------------


def model_folder(model: str) -> Path:
    """The folder holding `model`: the path itself, or its snapshot in the local HF cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.is_absolute() or model.startswith((".", "~")):
        raise ExpertLoadError(f"captioning model folder not found: {model}; fix `model` or build the folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(model, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError) as error:
        raise ExpertLoadError(
            f"captioning model {model!r} is neither a folder nor in the local Hugging Face cache "
            f"({type(error).__name__}); download it once (`hf download {model}`) or set `model` to a folder"
        ) from None


def _model_class(folder: Path) -> type:
    """The AutoModelForSpeechSeq2Seq class for the folder's config, read without loading weights."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING as MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES as NAMES

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ExpertLoadError(f"{folder} holds no loadable model config (config.json): {error}") from None
    if type(config) not in MAPPING:
        raise ExpertLoadError(
            f"{folder} holds a {config.model_type!r} model, not an audio-to-text generation model; "
            f"use a checkpoint of one of: {', '.join(sorted(NAMES))}"
        )
    return MAPPING[type(config)]


def captioner_provenance(config: CaptioningConfig) -> dict[str, str]:
    """What the captions depend on, without loading the weights."""
    folder = model_folder(config.model)
    return _provenance(config, folder, _model_class(folder))


def _provenance(config: CaptioningConfig, folder: Path, model_class: type) -> dict[str, str]:
    return {
        "model": config.model,
        "sha256": content_sha256(folder),
        "transformers": package_version("transformers"),
        "class": model_class.__name__,
    }


# --- loading ------------------------------------------------------------------------------------


def load_captioner(config: CaptioningConfig, device: str) -> Captioner:
    """Load processor and model from the local folder (never downloads) onto `device`."""
    from transformers import AutoProcessor

    target = _torch_device(device)
    folder = model_folder(config.model)
    model_class = _model_class(folder)
    try:
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        model = model_class.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ExpertLoadError(f"cannot load the captioning model in {folder}: {error}") from None
    if not hasattr(processor, "feature_extractor") or not hasattr(processor, "tokenizer"):
        raise ExpertLoadError(
            f"{folder} has no audio processor (feature extractor + tokenizer); "
            "an audio-to-text checkpoint ships preprocessor_config.json and a tokenizer"
        )
    return Captioner(processor, model.to(target).eval(), config, _provenance(config, folder, type(model)))


def _torch_device(device: str) -> torch.device:
    try:
        target = torch.device(device)
    except RuntimeError:
        raise ExpertLoadError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
    if target.type not in ("cpu", "cuda"):
        raise ExpertLoadError(f"unsupported device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ExpertLoadError(f"device {device!r} asked for, but torch sees no CUDA GPU; use device 'cpu'")
    return target


def _start_tokens(processor: Any, model: Any, config: CaptioningConfig) -> list[int]:
    """Decoder start tokens (Whisper: <|startoftranscript|> [lang] [task] <|notimestamps|>) + prefix."""
    tokenizer = processor.tokenizer
    if hasattr(tokenizer, "prefix_tokens") and hasattr(tokenizer, "set_prefix_tokens"):
        multilingual = getattr(model.generation_config, "is_multilingual", False)
        language = config.language or ("en" if multilingual else None)
        if language:
            try:
                tokenizer.set_prefix_tokens(language=language, task="transcribe")
            except ValueError as error:
                raise ExpertLoadError(f"language {language!r}: {error}") from None
        start = list(tokenizer.prefix_tokens)
    elif config.language:
        raise ExpertLoadError(f"`language` applies to Whisper checkpoints only; remove it for {type(model).__name__}")
    else:
        first = model.generation_config.decoder_start_token_id
        first = model.config.decoder_start_token_id if first is None else first
        if first is None:
            raise ExpertLoadError(f"{type(model).__name__} has no decoder_start_token_id in its configs")
        start = [int(first)]
    if config.decoder_prefix:
        start += tokenizer(config.decoder_prefix, add_special_tokens=False).input_ids
    limit = getattr(model.config, "max_target_positions", None)
    if limit is not None and len(start) + config.max_new_tokens > limit:
        raise ExpertLoadError(
            f"max_new_tokens ({config.max_new_tokens}) + {len(start)} start tokens exceed the decoder's "
            f"{limit} positions; lower max_new_tokens"
        )
    return start


def clip_seed(seed: int, key: str) -> int:
    """A 63-bit seed from (config seed, clip key): stable across processes and batch layouts."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") >> 1


# --- captioning ---------------------------------------------------------------------------------


class Captioner:
    """A loaded captioning expert: mono waveforms at `sample_rate` → caption candidates per clip."""

    def __init__(self, processor: Any, model: Any, config: CaptioningConfig, provenance: dict[str, str]):
        self.processor, self.model, self.config, self.provenance = processor, model, config, provenance
        extractor = processor.feature_extractor
        self.sample_rate = int(extractor.sampling_rate)
        self.window = getattr(extractor, "n_samples", None)  # fixed input length in samples, if any
        self.start = _start_tokens(processor, model, config)
        self._beam_config = self._generation_config(sampling=False)
        self._sample_config = self._generation_config(sampling=True)

    def caption(self, waveforms: Sequence[np.ndarray], keys: Sequence[str]) -> list[list[str]]:
        """Up to `candidates` distinct, non-empty captions per clip, best first (beam search)."""
        if len(waveforms) != len(keys):
            raise ValueError(f"{len(waveforms)} waveforms but {len(keys)} keys")
        clips = [to_mono(wave)[: self.window] for wave in waveforms]
        if not clips:
            return []
        if self.config.do_sample:
            return [self._sample(clip, key) for clip, key in zip(clips, keys)]
        if self.window is None:  # variable-length input: padding to the batch would leak into results
            return [self._generate([clip], self._beam_config)[0] for clip in clips]
        return self._generate(clips, self._beam_config)  # fixed window: clips are independent

    def _sample(self, clip: np.ndarray, key: str) -> list[str]:
        """One clip alone under its own seed: batch neighbours never shift its random stream."""
        device = self.model.device
        devices = (
            [] if device.type != "cuda" else [torch.cuda.current_device() if device.index is None else device.index]
        )
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(clip_seed(self.config.seed, key))
            return self._generate([clip], self._sample_config)[0]

    @torch.inference_mode()
    def _generate(self, clips: list[np.ndarray], generation_config: Any) -> list[list[str]]:
        from transformers import GenerationMixin

        inputs = self._features(clips)
        start = torch.tensor([self.start], device=self.model.device).expand(len(clips), -1)
        # The generic generate(), not Whisper's override: for beam search Whisper's repeats each
        # clip num_return_sequences times and returns N copies of the best beam
        # (huggingface/transformers#33445); it also adds timestamp and long-form logic unused here.
        sequences = GenerationMixin.generate(
            self.model, **inputs, decoder_input_ids=start, generation_config=generation_config
        )  # [clips * candidates, start + new tokens], grouped by clip
        texts = self.processor.tokenizer.batch_decode(sequences[:, len(self.start) :], skip_special_tokens=True)
        n = self.config.candidates
        return [_distinct(texts[i * n : (i + 1) * n]) for i in range(len(clips))]

    def _features(self, clips: list[np.ndarray]) -> dict[str, torch.Tensor]:
        batch = self.processor.feature_extractor(clips, sampling_rate=self.sample_rate, return_tensors="pt")
        name = self.model.main_input_name  # input_features (Whisper), input_values (wav2vec 2.0)
        return {name: batch[name].to(self.model.device, self.model.dtype)}

    def _generation_config(self, sampling: bool) -> Any:
        c = self.config
        if sampling:
            search = {"do_sample": True, "num_beams": 1, "top_p": c.top_p, "temperature": c.temperature}
        else:
            search = {"do_sample": False, "num_beams": c.num_beams, "top_p": None, "temperature": None}
        config = copy.deepcopy(self.model.generation_config)
        # max_length, not max_new_tokens: checkpoints ship a max_length, and setting both warns.
        length = len(self.start) + c.max_new_tokens
        config.update(**search, max_length=length, max_new_tokens=None, num_return_sequences=c.candidates)
        return config


def _distinct(texts: Sequence[str]) -> list[str]:
    """Whitespace-normalised, non-empty, first occurrence kept (beam order = score order)."""
    seen: dict[str, None] = {}
    for text in texts:
        clean = " ".join(text.split())
        if clean:
            seen.setdefault(clean, None)
    return list(seen)


# --- Beam ---------------------------------------------------------------------------------------


class CaptionerHandler(ModelHandler[tuple[str, np.ndarray], list[str], Captioner]):
    """RunInference handler. Element: (clip key, mono float32 waveform at `input_rate`).

    The key is part of the element because sampling seeds per clip; the job wraps the handler
    in a KeyedModelHandler with elements (key, (key, waveform)).
    """

    def __init__(self, config: CaptioningConfig, device: str, input_rate: int = 48000):
        super().__init__(min_batch_size=config.batch.min, max_batch_size=config.batch.max)
        self._config, self._device, self._input_rate = config, device, int(input_rate)

    def load_model(self) -> Captioner:
        return load_captioner(self._config, self._device)

    def run_inference(
        self, batch: Sequence[tuple[str, np.ndarray]], model: Captioner, inference_args: dict[str, Any] | None = None
    ) -> list[list[str]]:
        keys = [key for key, _ in batch]
        waveforms = [self._resample(wave, model.sample_rate) for _, wave in batch]
        return model.caption(waveforms, keys)

    def _resample(self, wave: np.ndarray, rate: int) -> np.ndarray:
        wave = to_mono(wave)
        if self._input_rate == rate:
            return wave
        return soxr.resample(wave, self._input_rate, rate, quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)

    def get_num_bytes(self, batch: Sequence[tuple[str, np.ndarray]]) -> int:
        return sum(np.asarray(wave).nbytes for _, wave in batch)  # not pickle.dumps of the audio

    def get_metrics_namespace(self) -> str:
        return "t2a_captioner"
