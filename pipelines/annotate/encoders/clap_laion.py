"""CLAP through the `laion_clap` package (LAION's own code and .pt checkpoints, e.g.
630k-audioset-best.pt), offline.

laion_clap reaches for the hub by name: `import laion_clap` builds BERT, RoBERTa and BART
tokenizers (training/data/loader.py) and `CLAP_Module(...)` loads 'roberta-base' (hook.py,
clap_module/model.py). Offline, transformers then quietly returns a tokenizer of five special
tokens, and every text gets the same embedding. Here those calls are redirected, for the import
and the construction only, to the configured `text_model` folder; the tokenizer is checked before
anything is built, and the checkpoint is loaded with `weights_only=True`.
"""

from __future__ import annotations

import contextlib
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.annotate.encoders.base import (
    CLAP_RATE,
    AudioTextEncoder,
    ModelLoadError,
    check_tokenizer,
    require_files,
    torch_device,
)
from pipelines.annotate.encoders.config import LAION_WINDOW_SECONDS, ClapConfig
from pipelines.core.io import content_sha256
from pipelines.core.tools import package_version

KEY = "annotate.clap"
TEXT_MODEL = "roberta-base"  # laion_clap's hard-coded text model (tmodel "roberta")
_UNUSED = ("bert-base-uncased", "facebook/bart-base")  # tokenizers laion_clap builds at import, never used for roberta
# Buffers older transformers saved with the text branch and newer ones do not keep.
_STALE_BUFFERS = ("text_branch.embeddings.position_ids", "text_branch.embeddings.token_type_ids")
_LOCK = threading.Lock()  # the redirection patches classes: one import/construction at a time


class LaionClap(AudioTextEncoder):
    def __init__(self, module: Any, provenance: dict[str, str]):
        super().__init__()
        self.module = module.eval()
        self.window_samples = round(LAION_WINDOW_SECONDS * CLAP_RATE)
        self.dim = module.model.joint_embed_shape
        self.provenance = provenance

    @torch.inference_mode()
    def _embed_audio(self, windows: np.ndarray) -> np.ndarray:
        # Exactly 480000 samples each: laion's random crop (> 10 s) and padding (< 10 s) never run.
        # A numpy input is quantised to int16 and back, as LAION's own data pipeline does.
        return self.module.get_audio_embedding_from_data(windows, use_tensor=False)

    @torch.inference_mode()
    def _embed_text(self, texts: list[str]) -> np.ndarray:
        return self.module.get_text_embedding(texts, use_tensor=False)


def provenance(config: ClapConfig) -> dict[str, str]:
    checkpoint, text_model = _paths(config)
    return {
        "backend": "laion_clap",
        "model": str(checkpoint),
        "sha256": content_sha256(checkpoint),
        "text_model": str(text_model),
        "text_model_sha256": content_sha256(text_model),
        "amodel": config.amodel,
        "enable_fusion": str(config.enable_fusion).lower(),
        "laion_clap": package_version("laion-clap"),
        "transformers": package_version("transformers"),
    }


def load(config: ClapConfig, device: str) -> LaionClap:
    target = torch_device(device)
    checkpoint, text_model = _paths(config)
    check_text_model(text_model)
    state = read_checkpoint(checkpoint)
    module = new_module(text_model, config.amodel, config.enable_fusion, target)
    result = module.model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelLoadError(
            f"{KEY}.model: {checkpoint} does not fit amodel {config.amodel!r} with enable_fusion "
            f"{config.enable_fusion}: {_keys('missing', result.missing_keys)}, {_keys('unexpected', result.unexpected_keys)}"
        )
    return LaionClap(module, provenance(config))


def _keys(what: str, keys: list[str]) -> str:
    return f"{len(keys)} {what} keys" + (f" (e.g. {keys[0]})" if keys else "")


def _paths(config: ClapConfig) -> tuple[Path, Path]:
    checkpoint = Path(config.model)
    if not checkpoint.is_file():
        raise ModelLoadError(f"{KEY}.model: checkpoint file not found: {checkpoint} (a LAION-CLAP .pt file)")
    if config.text_model is None or not Path(config.text_model).is_dir():
        raise ModelLoadError(
            f"{KEY}.text_model: folder not found: {config.text_model} (roberta-base's config and tokenizer)"
        )
    return checkpoint, Path(config.text_model)


def check_text_model(folder: Path) -> None:
    """The folder must hold a RoBERTa config and the tokenizer that goes with it."""
    import transformers

    where = f"{KEY}.text_model {folder}"
    require_files(folder, f"{KEY}.text_model", {"model config": ("config.json",)})
    try:
        config = transformers.RobertaConfig.from_pretrained(folder, local_files_only=True)
        tokenizer = transformers.RobertaTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{where}: cannot read the RoBERTa config or tokenizer: {error}") from None
    check_tokenizer(tokenizer, config.vocab_size, where)


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """LAION's checkpoint layout ({"state_dict": ...} or a bare state dict, keys with or without
    DDP's "module." prefix) → the CLAP model's state dict. Tensors and plain containers only."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = [line.split(" was not")[0].strip() for line in str(error).splitlines() if "Unsupported global" in line]
        if not found:  # not a pickle of tensors at all
            raise ModelLoadError(
                f"{KEY}.model: {path} is not a readable torch checkpoint: {str(error).splitlines()[-1]}"
            ) from None
        reason = found[0]
        raise ModelLoadError(
            f"{KEY}.model: {path} holds pickled Python objects besides tensors, which are not loaded "
            f"(torch.load weights_only=True; {reason}). If you trust the file, re-save its weights: "
            "torch.save({'state_dict': torch.load(p, weights_only=False)['state_dict']}, out)"
        ) from None
    except (OSError, RuntimeError, EOFError) as error:
        raise ModelLoadError(f"{KEY}.model: {path} is not a readable torch checkpoint: {error}") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{KEY}.model: {path} holds no state dict of tensors (expected LAION-CLAP's .pt layout)")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    for key in _STALE_BUFFERS:
        state.pop(key, None)
    return state


def new_module(text_model: Path, amodel: str, enable_fusion: bool, device: torch.device) -> Any:
    """A randomly initialised laion_clap.CLAP_Module whose 'roberta-base' is `text_model`."""
    with _LOCK, _hub_names_from(text_model):
        import laion_clap  # its import builds tokenizers by hub name: inside the redirection

        try:
            return laion_clap.CLAP_Module(
                enable_fusion=enable_fusion, device=str(device), amodel=amodel, tmodel="roberta"
            )
        except RuntimeError as error:
            if "not found" not in str(error):
                raise
            from clap_module.factory import list_models  # laion_clap puts clap_module on sys.path

            audio = [name for name in list_models() if name.startswith(("HTSAT", "PANN"))]
            raise ModelLoadError(
                f"{KEY}.amodel: {amodel!r} is not a laion_clap audio model; valid: {', '.join(audio)}"
            ) from None


@contextlib.contextmanager
def _hub_names_from(text_model: Path) -> Iterator[None]:
    """Redirect `from_pretrained` of the tokenizer and model classes laion_clap uses (several are
    one class in transformers 5: BartTokenizer is RobertaTokenizer) by the name asked for."""
    import transformers

    classes = {
        transformers.RobertaTokenizer: "tokenizer",
        transformers.BertTokenizer: "tokenizer",
        transformers.BartTokenizer: "tokenizer",
        transformers.RobertaModel: "model",
        transformers.BertModel: "model",
        transformers.BartModel: "model",
    }
    saved = {cls: cls.__dict__.get("from_pretrained") for cls in classes}
    for cls, kind in classes.items():
        cls.from_pretrained = classmethod(_redirected(cls.from_pretrained.__func__, kind, text_model))
    try:
        yield
    finally:
        for cls, original in saved.items():
            if original is None:
                del cls.from_pretrained  # the inherited classmethod shows through again
            else:
                cls.from_pretrained = original


def _redirected(original: Any, kind: str, text_model: Path) -> Any:
    def from_pretrained(cls: type, name: Any, *args: Any, **kwargs: Any) -> Any:
        if str(name) == TEXT_MODEL and kind == "tokenizer":
            return original(cls, text_model, local_files_only=True)
        if str(name) == TEXT_MODEL:
            # Every text-branch weight comes from the CLAP checkpoint: build from the config only.
            import transformers

            return cls(transformers.RobertaConfig.from_pretrained(text_model, local_files_only=True))
        if str(name) in _UNUSED and kind == "tokenizer":
            return _Unavailable(str(name))
        if str(name) in _UNUSED:
            raise ModelLoadError(f"{KEY}: only laion_clap's roberta text branch is supported offline, not {name}")
        return original(cls, name, *args, **{**kwargs, "local_files_only": True})

    return from_pretrained


class _Unavailable:
    """Stands in for a tokenizer laion_clap builds at import for text models not used here."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ModelLoadError(f"{KEY}: laion_clap's {self.name} tokenizer is not available offline (only roberta is)")
