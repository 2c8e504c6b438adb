"""Building blocks of the typed configuration (datasets.yaml); the file's top-level model is
`pipelines.datasets`.

YAML holds values only. Every model is strict: an unknown key is an error that names the key path,
the closest valid key and all valid keys. Relative paths resolve against the directory of the config
file (passed as validation context), so a config works from any working directory.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from pipelines.core.storage import ObjectPath, is_url, location


class ConfigError(ValueError):
    """A configuration a user can fix; the message names the file, the key path and what to do."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="wrap")
    @classmethod
    def _known_keys(cls, data: Any, handler: Any) -> Any:
        """Unknown keys are errors that name the closest valid key, reported together with every
        other problem of the block (a typo must not hide the ten other mistakes beside it)."""
        if not isinstance(data, dict):
            return handler(data)
        valid = sorted(cls.model_fields)
        known = {name for field in cls.model_fields.values() for name in (field.alias,) if name}
        unknown = [key for key in data if key not in cls.model_fields and key not in known]
        if not unknown:
            return handler(data)
        errors = [_unknown_key(key, data[key], valid) for key in unknown]
        try:
            handler({key: value for key, value in data.items() if key not in unknown})
        except ValidationError as error:
            errors += [_line_error(item) for item in error.errors()]
        raise ValidationError.from_exception_data(cls.__name__, errors)


def _unknown_key(key: Any, value: Any, valid: list[str]) -> InitErrorDetails:
    close = difflib.get_close_matches(str(key), valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    message = f"unknown key {key!r}{hint}; valid keys: {', '.join(valid)}"
    return InitErrorDetails(type=PydanticCustomError("unknown_key", message), loc=(), input=value)


_KNOWN_ERROR_TYPES = frozenset(typing.get_args(ErrorType))


def _line_error(item: dict[str, Any]) -> InitErrorDetails:
    """A reported error as one to raise again (a nested block's own unknown keys included)."""
    if item["type"] in _KNOWN_ERROR_TYPES and item["type"] != "value_error":
        return InitErrorDetails(type=item["type"], loc=item["loc"], input=item["input"], ctx=item.get("ctx", {}))
    return InitErrorDetails(type=PydanticCustomError(item["type"], item["msg"]), loc=item["loc"], input=item["input"])


def _base_dir(info: ValidationInfo) -> Path | None:
    context = info.context or {}
    return Path(context["base_dir"]) if "base_dir" in context else None


def _resolve(path: Path, info: ValidationInfo) -> Path:
    path = Path(path).expanduser()
    base = _base_dir(info)
    if not path.is_absolute() and base is not None:
        path = base / path
    return Path(path.absolute())


def _existing_file(path: Path, info: ValidationInfo) -> Path:
    path = _resolve(path, info)
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return path


def _existing_dir(path: Path, info: ValidationInfo) -> Path:
    path = _resolve(path, info)
    if not path.is_dir():
        raise ValueError(f"folder not found: {path}")
    return path


def _remote(value: Any) -> Any:
    """A URL (s3://, gs://, any fsspec URL) as an ObjectPath, before pydantic makes a Path of it (which
    would turn `s3://b/x` into the local folder `s3:/b/x`); an unknown scheme or a missing driver is
    this key's error. Anything else goes on to the Path validators."""
    if isinstance(value, ObjectPath) or (isinstance(value, str) and is_url(value)):
        return location(value)  # UnsupportedStorage is a ValueError: reported under the key's path
    return value


def _remote_or(check: Any) -> Any:
    def validate(value: Any, info: ValidationInfo) -> Any:
        return value if isinstance(value, ObjectPath) else check(value, info)

    return validate


# Local paths resolve against the config's folder; URLs (object storage) are taken as they are: an
# output is created on first write, an input is read when the job runs (no credentials needed to validate).
_AsText = PlainSerializer(lambda value: str(value) if isinstance(value, ObjectPath) else value)
InputFile = Annotated[Path | ObjectPath, BeforeValidator(_remote), AfterValidator(_remote_or(_existing_file)), _AsText]
InputDir = Annotated[Path, AfterValidator(_existing_dir)]
LocalFile = Annotated[Path, AfterValidator(_existing_file)]  # read by a tool that knows local paths only (yt-dlp)
OutputDir = Annotated[Path | ObjectPath, BeforeValidator(_remote), AfterValidator(_remote_or(_resolve)), _AsText]
# A path that may contain {placeholders}; resolved against the config folder like any other path.
PathTemplate = Annotated[str, AfterValidator(lambda value, info: str(_resolve(Path(value), info)))]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=64)]


class RetryPolicy(StrictModel):
    """Retries with exponential backoff for retryable failures (429, 5xx, timeouts, bot checks)."""

    attempts: int = Field(3, ge=1, le=20)  # total tries per clip and run, the first included
    backoff: float = Field(2.0, ge=0)  # seconds before the second try; doubles each time
    max_backoff: float = Field(60.0, ge=0)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt` (1-based)."""
        return min(self.max_backoff, self.backoff * 2 ** (attempt - 1))


class MediaConfig(StrictModel):
    """Normalization of every clip (pipelines/ingest/media.py)."""

    sample_rate: int = Field(48000, ge=8000, le=192000)  # CLAP's rate (docs/ARCHITECTURE.md, "Contracts")
    frames: int = Field(4, ge=0, le=64)  # Make-An-Audio §4.3 pools 4 uniformly picked frames
    frame_size: int = Field(224, ge=16, le=2048)  # CLIP's input size; shorter side + centre crop
    max_duration: float = Field(600.0, gt=0)  # seconds decoded at most from one input
    # Clips with less real audio are refused ("only 0.0008 s of audio decoded"): a header that lies
    # about its rate, a segment in a truncated file. Real one-shot sounds (a click) last ~0.1 s.
    min_duration: float = Field(0.1, ge=0)
    timeout: float = Field(300.0, gt=0)  # wall-clock seconds for one ffmpeg run

    @model_validator(mode="after")
    def _durations(self) -> MediaConfig:
        if self.min_duration >= self.max_duration:
            raise ValueError(f"min_duration {self.min_duration:g} must be below max_duration {self.max_duration:g}")
        return self


def format_validation_error(
    error: ValidationError, data: Any, where: str, choices: dict[str, list[str]] | None = None
) -> str:
    """One line per problem, by key path. `choices` names the valid values of each union tag."""
    lines = [f"{where}: invalid configuration ({error.error_count()} problem(s))"]
    for item in error.errors():
        path = _key_path(item["loc"], data)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "union_tag_not_found":
            message = _missing_tag(item["ctx"]["discriminator"].strip("'"), item["input"], choices or {})
        lines.append(f"  {path or '<top>'}: {message}")
    return "\n".join(lines)


def _missing_tag(tag: str, value: Any, choices: dict[str, list[str]]) -> str:
    message = f"required key {tag!r} is missing"
    if tag in choices:
        message += f" (one of: {', '.join(choices[tag])})"
    keys = [str(key) for key in value] if isinstance(value, dict) else []
    close = difflib.get_close_matches(tag, keys, n=1)
    return message + (f"; found {close[0]!r} — did you mean {tag!r}?" if close else "")


def _key_path(loc: Iterable[Any], data: Any) -> str:
    """Render a pydantic location against the input, dropping the tags unions put into it."""
    items = list(loc)
    parts: list[str] = []
    node = data
    for i, item in enumerate(items):
        if isinstance(item, int) and isinstance(node, list):
            parts.append(f"[{item}]")
            node = node[item] if item < len(node) else None
        elif isinstance(node, dict) and item in node:
            parts.append(f".{item}" if parts else str(item))
            node = node[item]
        elif isinstance(node, dict) and (item in node.values() or (i + 1 < len(items) and items[i + 1] in node)):
            continue  # a union tag (the `format`/`backend` value, or a callable discriminator's tag)
        else:
            parts.append(f".{item}" if parts else str(item))
            node = None
    return "".join(parts)


# --- YAML -----------------------------------------------------------------------------------------


class DuplicateKey(yaml.YAMLError):
    """A mapping that names a key twice: YAML keeps the last one and drops the first silently."""


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKey(f"duplicate key {key!r} at line {line} (first at line {seen[key]})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> Any:
    """A YAML file's data; a key given twice in one mapping (two corpora of one name) is a
    ConfigError naming both lines, not a silent last-one-wins."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except DuplicateKey as error:
        raise ConfigError(f"{path}: {error}; rename or remove one") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read it: {error}") from None
