"""THE shard contract: sample keys, member names, codecs, tar header settings and the sample JSON.

A shard is a plain ustar archive of samples; a sample is the members sharing a key:

    <key>.json                  SampleMeta (schema `t2a.sample/1`), deterministic UTF-8 JSON
    <key>.mel.<profile>.npy     float16 [n_mels, frames], one per configured mel profile
    <key>.flac                  the clip cache's audio bytes as they are (optional)
    <key>.frame_NN.jpg          video frames, NN = 00, 01, ... (optional)
    <key>.clap_audio.npy        CLAP audio embedding (annotate stage; optional)
    <key>.clip_image.npy        CLIP embedding of each frame, [frames, dim] (annotate stage; optional)
    <key>.clip_image_mean.npy   their mean, L2-normalised, [dim] (Make-An-Audio §4.3 pools 4 frames)

Latent shards (`t2a encode-latents`, training/tasks/encode_latents.py) hold the same `<key>.json` and
embeddings, and instead of mels and media one `<key>.latent.npy`: the mel VAE's posterior, float16
[2·C, time/r, n_mels/r] (mean, then log-variance), keyed by the VAE checkpoint in their folder name.

The writer, the readers, the training loader and the tests import these names; nothing else spells a
member name or the schema string (docs/ARCHITECTURE.md, "Contracts"). docs/shards.md is the reader-facing description.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import xxhash
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.core import npy, records
from pipelines.core.records import CLIP_ID_MAX, CLIP_ID_RE

SCHEMA = "t2a.sample/1"
STATS_SCHEMA = "t2a.shard-stats/1"
SPLITS = ("train", "valid", "test")
INDEX_NAME = "index.json"
STATS_SUFFIX = ".stats.json"  # shard-000000.tar → shard-000000.stats.json, written last

# Tar header settings: with these, a member's header depends only on its name and size.
MTIME = 946684800  # 2000-01-01T00:00:00Z, not the clock
MODE = 0o644
TAR_FORMAT = tarfile.USTAR_FORMAT
# wids indexes a shard by reading the raw 100-byte ustar name field, ignoring PAX/GNU long-name
# records; longer member names would be silently cut there, so the contract forbids them.
NAME_MAX = 100

JSON = "json"
AUDIO = "flac"
EMBEDDINGS = ("clap_audio", "clip_image", "clip_image_mean")
LATENT = "latent.npy"  # latent shards only
TOKENS = "tokens.npy"  # token shards only (`t2a encode-tokens`): uint16 codebook indices [T', F']
MAX_FRAMES = 100  # frame_00 .. frame_99
MEL_DTYPE = "float16"
KINDS = ("json", "mel", "audio", "frame", "embedding", "latent", "tokens")

# Lower case: webdataset lower-cases member suffixes when it groups a sample.
# ≤ 26 characters: with a 64-character key, `<key>.mel.<profile>.npy` stays within NAME_MAX.
PROFILE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,25}")
_MEL_RE = re.compile(r"mel\.([a-z0-9][a-z0-9_-]{0,25})\.npy")
_FRAME_RE = re.compile(r"frame_([0-9]{2})\.jpg")
_HEX64 = r"[0-9a-f]{64}"


class ContractError(ValueError):
    """A key, member, sample or shard that breaks the shard contract."""


class ChecksumError(ContractError):
    """A member whose bytes differ from the checksum its sample's JSON records: corrupt in storage
    or in transit. Readers skip the sample (the training loader counts it), never decode it."""


# --- keys and member names -----------------------------------------------------------------------


def check_key(key: str) -> str:
    """A sample key is a clip id: `[A-Za-z0-9_-]{1,64}` (records.CLIP_ID_RE), so never a dot."""
    if not isinstance(key, str) or not CLIP_ID_RE.fullmatch(key):
        raise ContractError(f"bad sample key {key!r} (expected 1-{CLIP_ID_MAX} characters of [A-Za-z0-9_-], no dots)")
    return key


def mel_member(profile: str) -> str:
    if not PROFILE_RE.fullmatch(profile):
        raise ContractError(f"bad mel profile name {profile!r} (expected [a-z0-9][a-z0-9_-]*, at most 26 characters)")
    return f"mel.{profile}.npy"


def frame_member(index: int) -> str:
    if not 0 <= index < MAX_FRAMES:
        raise ContractError(f"frame index {index} out of range 0..{MAX_FRAMES - 1}")
    return f"frame_{index:02d}.jpg"


def embedding_member(name: str) -> str:
    if name not in EMBEDDINGS:
        raise ContractError(f"unknown embedding {name!r}; valid: {', '.join(EMBEDDINGS)}")
    return f"{name}.npy"


def member_kind(member: str) -> str | None:
    """One of KINDS for a member name (the part after the key's dot), None for an unknown one."""
    if member == JSON:
        return "json"
    if member == AUDIO:
        return "audio"
    if _MEL_RE.fullmatch(member):
        return "mel"
    if _FRAME_RE.fullmatch(member):
        return "frame"
    if member.endswith(".npy") and member[:-4] in EMBEDDINGS:
        return "embedding"
    if member == LATENT:
        return "latent"
    if member == TOKENS:
        return "tokens"
    return None


def mel_profile(member: str) -> str:
    match = _MEL_RE.fullmatch(member)
    if not match:
        raise ContractError(f"{member!r} is not a mel member")
    return match.group(1)


def member_name(key: str, member: str) -> str:
    """The tar member name `<key>.<member>`, checked against the key rule and NAME_MAX."""
    name = f"{check_key(key)}.{member}"
    if len(name) > NAME_MAX:
        raise ContractError(
            f"member name {name!r} is {len(name)} characters, over the limit of {NAME_MAX} (shorten the key)"
        )
    return name


def split_name(name: str) -> tuple[str, str]:
    """`<key>.<member>` → (key, member), split at the FIRST dot as WebDataset does."""
    key, dot, member = name.partition(".")
    if not dot:
        raise ContractError(f"member {name!r} has no '.' between key and member name")
    return key, member


def stats_name(shard_name: str) -> str:
    return shard_name.removesuffix(".tar") + STATS_SUFFIX


# --- codecs ---------------------------------------------------------------------------------------


def encode_npy(array: np.ndarray) -> bytes:
    """`.npy` format 1.0, C order, little-endian: the same array always gives the same bytes."""
    try:
        return npy.encode(array)
    except npy.NpyError as error:
        raise ContractError(str(error)) from None


def decode_npy(data: bytes) -> np.ndarray:
    """Never unpickles: an object array (or any pickle payload) is refused."""
    try:
        return npy.decode(data)
    except npy.NpyError as error:
        raise ContractError(str(error)) from None


def npy_size(shape: Sequence[int], dtype: Any) -> int:
    """Bytes of `encode_npy` for an array of this shape and dtype, without building it."""
    header = io.BytesIO()
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype).newbyteorder("<"))
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return len(header.getvalue()) + math.prod(shape) * np.dtype(dtype).itemsize


def encode_json(payload: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8 kept readable, NaN/Infinity refused."""
    try:
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ContractError(f"not deterministic JSON: {error}") from None
    return text.encode("utf-8")


def decode_json(data: bytes) -> Any:
    def refuse(constant: str) -> None:
        raise ContractError(f"JSON holds {constant}, which the contract does not allow")

    try:
        return json.loads(data.decode("utf-8"), parse_constant=refuse)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ContractError(f"bad JSON: {error}") from None


# --- the sample JSON ------------------------------------------------------------------------------

PositiveInt = Annotated[int, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]
Text = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


# The clip's own records (clip.json, pipelines.core.records): the sample embeds them as they are.
Segment = records.Segment
LabelMeta = records.LabelRef
CaptionMeta = records.CaptionRef


class CandidateMeta(_Strict):
    """A pseudo-caption proposed by an expert (annotate stage), with its CLAP text-audio score."""

    text: Text
    expert: Text
    clap_score: float | None = None


class MelMeta(_Strict):
    member: str
    shape: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]  # [n_mels, frames]
    dtype: Literal["float16"]
    sample_rate: PositiveInt
    hop_length: PositiveInt
    n_mels: PositiveInt
    real_frames: Count  # frames computed from real audio; the rest is padding

    @model_validator(mode="after")
    def _consistent(self) -> MelMeta:
        if self.shape[0] != self.n_mels or self.real_frames > self.shape[1]:
            raise ValueError(f"shape {self.shape} disagrees with n_mels {self.n_mels} / real_frames {self.real_frames}")
        return self


class AudioMeta(_Strict):
    member: Literal["flac"]
    sha256: Annotated[str, Field(pattern=_HEX64)]
    bytes: PositiveInt


class ArrayMeta(_Strict):
    member: str
    shape: Annotated[list[PositiveInt], Field(min_length=1, max_length=2)]  # [dim] or [frames, dim]
    dtype: Literal["float16", "float32"]
    model: Text  # the encoder that produced it


class ReviewMeta(_Strict):
    """A human review the sample's caption took (pipelines/shard/overrides.py, `t2a review`)."""

    judgment: Literal["correct", "partly", "wrong"]
    action: Literal["replaced", "reselected"]  # a typed caption replaced it, or the judged one was rejected
    reviewer: str
    time: str  # when the judgment was made (UTC, ISO 8601)
    judged_caption_sha256: str | None = None
    original_caption: str | None = None


class SampleMeta(_Strict):
    schema_: Literal[SCHEMA] = Field(SCHEMA, alias="schema")
    key: str
    source: Text
    format: Text
    source_id: Text
    segment: Segment
    duration: Seconds  # true seconds of audio, before padding
    audio_seconds: Seconds  # seconds in the audio (the segment length when padded)
    padded: bool
    sample_rate: PositiveInt
    labels: list[LabelMeta] = []
    captions: list[CaptionMeta] = []
    candidates: list[CandidateMeta] = []  # best CLAP score first (pipelines/annotate/job.py)
    selected_caption: str | None = None  # the caption to train on: CLAP-selected, or the configured fallback
    selected_expert: str | None = None  # the expert that proposed it (or the fallback's kind: label_text, mbtg)
    label_text: str | None = None  # AudioLDM §5 concatenation of the labels (pipelines.annotate.prompts.labels)
    mbtg_text: str | None = None  # Diffsound §IV-C mask-based text (pipelines.annotate.prompts.mbtg)
    event_count: Count  # distinct events (pipelines.core.labels): single- before multi-event curriculum
    split: Literal["train", "valid", "test"]
    licence: str | None = None
    meta: dict[str, Any] = {}  # source text: Freesound title/description/tags, Clotho keywords, ...
    mels: Annotated[dict[str, MelMeta], Field(min_length=1)]
    frames: list[str] = []
    audio: AudioMeta | None = None
    embeddings: dict[str, ArrayMeta] = {}
    tools: dict[str, str] = {}
    # Added within t2a.sample/1 (optional: samples written before them still read):
    licence_id: str | None = None  # `licence` as an SPDX-like id (pipelines.core.licences)
    review: ReviewMeta | None = None  # the human review that changed the selected caption
    # xxh3_64 (hex) of every member's bytes, and under "json" of this JSON's own bytes with that
    # value written as zeros (`seal`). A cheap check readers make before decoding; {} in shards
    # written before it. The last key of the JSON: `_json_checksum_at` relies on it.
    xxh3: dict[str, Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]] = {}

    @model_validator(mode="after")
    def _member_names(self) -> SampleMeta:
        check_key(self.key)
        for profile, mel in self.mels.items():
            if mel.member != mel_member(profile):
                raise ValueError(f"mels.{profile}.member must be {mel_member(profile)!r}, not {mel.member!r}")
        if self.frames != [frame_member(i) for i in range(len(self.frames))]:
            raise ValueError(f"frames must be frame_00.jpg, frame_01.jpg, ... in order, not {self.frames}")
        for name, array in self.embeddings.items():
            if array.member != embedding_member(name):
                raise ValueError(f"embeddings.{name}.member must be {embedding_member(name)!r}")
        if self.segment.start is not None and self.segment.end is not None and self.segment.end < self.segment.start:
            raise ValueError(f"segment ends ({self.segment.end}) before it starts ({self.segment.start})")
        return self

    def members(self) -> list[str]:
        """The member names this metadata declares, sorted."""
        names = [
            JSON,
            *(m.member for m in self.mels.values()),
            *self.frames,
            *(a.member for a in self.embeddings.values()),
        ]
        return sorted(names + ([AUDIO] if self.audio else []))

    def to_json(self) -> bytes:
        return encode_json(self.model_dump(mode="json", by_alias=True))

    @classmethod
    def from_json(cls, data: bytes) -> SampleMeta:
        try:
            return cls.model_validate(decode_json(data))
        except ValidationError as error:
            raise ContractError(f"JSON does not match {SCHEMA}: {_errors(error)}") from None


def _errors(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in error.errors()[:5])


# --- samples --------------------------------------------------------------------------------------


@dataclass
class Sample:
    key: str
    meta: SampleMeta
    mels: dict[str, np.ndarray]  # profile → float16 [n_mels, frames]
    audio: bytes | None = None  # FLAC bytes
    frames: list[bytes] = field(default_factory=list)  # JPEG bytes, frame_00 first
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # embeddings by name


def build_sample(
    meta: SampleMeta,
    mels: Mapping[str, np.ndarray],
    audio: bytes | None = None,
    frames: Sequence[bytes] = (),
    arrays: Mapping[str, np.ndarray] | None = None,
) -> dict[str, bytes]:
    """Encode one sample as {member name: bytes}; raises ContractError where data and meta disagree."""
    members = {meta.mels[p].member: encode_npy(m) for p, m in mels.items() if p in meta.mels}
    if audio is not None:
        members[AUDIO] = bytes(audio)
    members.update({frame_member(i): bytes(f) for i, f in enumerate(frames)})
    for name, array in (arrays or {}).items():
        members[embedding_member(name)] = encode_npy(array)
    members = seal(meta, members)
    problems = [f"{p} has no entry in meta.mels" for p in mels if p not in meta.mels]
    problems += check_sample(members)
    if problems:
        raise ContractError(f"sample {meta.key}: {'; '.join(problems)}")
    return dict(sorted(members.items()))


def checksum(data: bytes) -> str:
    """xxh3_64 of a member's bytes, 16 hex digits."""
    return xxhash.xxh3_64_hexdigest(data)


_UNSET = b"0" * 16  # the JSON's own checksum while it is computed


def seal(meta: SampleMeta, members: Mapping[str, bytes]) -> dict[str, bytes]:
    """`members` (without the JSON) plus the JSON of `meta`, recording the xxh3_64 of every member
    and of the JSON itself (over its bytes with its own value as zeros).

    xxh3_64, not sha256: it is there to catch flipped or lost bytes (storage, transfer), not
    forgery, and costs the loader ~3 µs for a 128 KiB mel where sha256 costs ~170 µs
    (docs/BENCHMARKS.md, "Member checksums")."""
    data = {name: bytes(value) for name, value in members.items() if name != JSON}
    sums = {name: checksum(value) for name, value in data.items()}
    body = meta.model_copy(update={"xxh3": {**sums, JSON: _UNSET.decode()}}).to_json()
    at = _json_checksum_at(body)
    if at is None or body[at : at + 16] != _UNSET:
        raise ContractError(f"sample {meta.key}: cannot place the JSON's own checksum")
    return {**data, JSON: body[:at] + checksum(body).encode() + body[at + 16 :]}


def _json_checksum_at(data: bytes) -> int | None:
    """Where the JSON's own checksum value starts: inside the last key's object, `"xxh3":{...}`
    (keys are sorted, and a quote inside a string value is always escaped)."""
    start = data.rfind(b'"xxh3":{')
    if start < 0:
        return None
    end = data.find(b"}", start)
    found = data.find(b'"json":"', start, end)
    return None if found < 0 else found + len(b'"json":"')


def checksum_problems(members: Mapping[str, Any]) -> list[str]:
    """The members (of those present) whose bytes differ from the xxh3_64 the sample's JSON records."""
    if JSON not in members:
        return []
    data = _bytes(members[JSON])
    at = _json_checksum_at(data)
    if at is None:
        return []  # written before members had checksums (a corrupt JSON fails to decode anyway)
    expected = data[at : at + 16]
    if checksum(data[:at] + _UNSET + data[at + 16 :]).encode() != expected:
        return [f"{JSON} does not match its checksum (corrupt member)"]
    try:  # the JSON matched its own checksum: this object is as written, hex strings by member
        sums = json.loads(data[data.rfind(b'"xxh3":{') + len(b'"xxh3":') : data.find(b"}", at) + 1])
    except ValueError as error:
        return [f"bad xxh3 object: {error}"]
    problems = []
    for name, value in sorted(sums.items()):
        if name != JSON and name in members and checksum(_bytes(members[name])) != value:
            problems.append(f"{name} does not match its checksum (corrupt member)")
    return problems


def verify_checksums(members: Mapping[str, Any]) -> None:
    """Raise ChecksumError for a sample with a corrupt member."""
    problems = checksum_problems(members)
    if problems:
        raise ChecksumError(f"sample {members.get('__key__', '?')}: {'; '.join(problems)}")


def decode_sample(members: Mapping[str, Any]) -> Sample:
    """{member name: bytes} (a webdataset sample: `__key__` etc. are checked or ignored) → Sample."""
    sample, problems = _decode(members)
    if problems or sample is None:
        key = members.get("__key__", "?")
        raise ContractError(f"sample {key}: {'; '.join(problems)}")
    return sample


def check_sample(members: Mapping[str, Any]) -> list[str]:
    """Every way these members break the contract; empty when the sample is valid."""
    return _decode(members)[1]


def _decode(members: Mapping[str, Any]) -> tuple[Sample | None, list[str]]:
    data = {name: _bytes(value) for name, value in members.items() if not name.startswith("__")}
    problems = [f"unknown member {name!r}" for name in sorted(data) if member_kind(name) is None]
    if JSON not in data:
        return None, [*problems, "no json member"]
    try:
        meta = SampleMeta.from_json(data[JSON])
    except ContractError as error:
        return None, [*problems, str(error)]
    problems += checksum_problems(data)
    if members.get("__key__", meta.key) != meta.key:
        problems.append(f"json key {meta.key!r} differs from the tar key {members['__key__']!r}")
    declared = set(meta.members())
    problems += [f"declared member {m} is missing" for m in sorted(declared - set(data))]
    problems += [f"member {m} is not declared in the json" for m in sorted(set(data) - declared) if member_kind(m)]
    longest = max(data, key=len)
    if len(meta.key) + 1 + len(longest) > NAME_MAX:
        problems.append(
            f"member name {meta.key}.{longest} is over the limit of {NAME_MAX} characters (shorten the key)"
        )
    mels = {p: _array(data, mel.member, mel.shape, mel.dtype, problems) for p, mel in meta.mels.items()}
    arrays = {n: _array(data, a.member, a.shape, a.dtype, problems) for n, a in meta.embeddings.items()}
    audio = data.get(AUDIO) if meta.audio else None
    if meta.audio and audio is not None:
        if len(audio) != meta.audio.bytes or hashlib.sha256(audio).hexdigest() != meta.audio.sha256:
            problems.append("flac bytes do not match audio.sha256/bytes")
        elif not audio.startswith(b"fLaC"):
            problems.append("flac member is not FLAC")
    frames = [data.get(name, b"") for name in meta.frames]
    problems += [
        f"{name} is not a JPEG" for name, f in zip(meta.frames, frames) if f and not f.startswith(b"\xff\xd8\xff")
    ]
    if problems:
        return None, problems
    return Sample(meta.key, meta, mels, audio, frames, arrays), []  # type: ignore[arg-type]


def _array(data: dict[str, bytes], member: str, shape: list[int], dtype: str, problems: list[str]) -> np.ndarray | None:
    if member not in data:
        return None
    try:
        array = decode_npy(data[member])
    except ContractError as error:
        problems.append(f"{member}: {error}")
        return None
    if list(array.shape) != shape or array.dtype != np.dtype(dtype):
        problems.append(f"{member} is {array.dtype}{list(array.shape)}, the json declares {dtype}{shape}")
    return array


def check_latent_sample(members: Mapping[str, Any]) -> list[str]:
    """Every way a latent-shard sample breaks the contract: the source's JSON (valid SampleMeta), its
    declared embeddings, and one float16 `latent.npy` [2·C, H, W]; no mels, media or anything else."""
    data = {name: _bytes(value) for name, value in members.items() if not name.startswith("__")}
    if JSON not in data or LATENT not in data:
        return [f"a latent sample needs {JSON} and {LATENT}, has {sorted(data)}"]
    try:
        meta = SampleMeta.from_json(data[JSON])
    except ContractError as error:
        return [str(error)]
    problems = checksum_problems(data)
    if members.get("__key__", meta.key) != meta.key:
        problems.append(f"json key {meta.key!r} differs from the tar key {members['__key__']!r}")
    allowed = {JSON, LATENT, *(a.member for a in meta.embeddings.values())}
    problems += [f"member {m} does not belong in a latent shard" for m in sorted(set(data) - allowed)]
    problems += [f"declared member {m} is missing" for m in sorted(allowed - set(data))]
    for array in meta.embeddings.values():
        _array(data, array.member, array.shape, array.dtype, problems)
    try:
        latent = decode_npy(data[LATENT])
        if latent.ndim != 3 or latent.dtype != np.float16 or latent.shape[0] % 2:
            problems.append(f"{LATENT} is {latent.dtype}{list(latent.shape)}, expected float16 [2·C, H, W]")
    except ContractError as error:
        problems.append(f"{LATENT}: {error}")
    return problems


def check_token_sample(members: Mapping[str, Any]) -> list[str]:
    """Every way a token-shard sample breaks the contract: the source's JSON (valid SampleMeta), its
    declared embeddings, and one uint16 `tokens.npy` [T', F']; no mels, media or anything else."""
    data = {name: _bytes(value) for name, value in members.items() if not name.startswith("__")}
    if JSON not in data or TOKENS not in data:
        return [f"a token sample needs {JSON} and {TOKENS}, has {sorted(data)}"]
    try:
        meta = SampleMeta.from_json(data[JSON])
    except ContractError as error:
        return [str(error)]
    problems = checksum_problems(data)
    allowed = {JSON, TOKENS, *(a.member for a in meta.embeddings.values())}
    problems += [f"member {m} does not belong in a token shard" for m in sorted(set(data) - allowed)]
    problems += [f"declared member {m} is missing" for m in sorted(allowed - set(data))]
    try:
        tokens = decode_npy(data[TOKENS])
        if tokens.ndim != 2 or tokens.dtype != np.uint16:
            problems.append(f"{TOKENS} is {tokens.dtype}{list(tokens.shape)}, expected uint16 [T', F']")
    except ContractError as error:
        problems.append(f"{TOKENS}: {error}")
    return problems


def _bytes(value: Any) -> bytes:
    """Members as bytes, whether they come as bytes, memoryviews or file objects (wids)."""
    if hasattr(value, "read"):
        return value.read()
    return bytes(value)
