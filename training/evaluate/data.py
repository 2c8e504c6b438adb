"""The clips `t2a evaluate` compares: a `t2a sample` output folder, a folder of WAVs, or a split
of a shard corpus. A clip carries its text (prompt or caption), its labels and the sha256 of its
encoded bytes, which keys the embedding cache.

Shard audio is held in memory (FLAC bytes, ~0.5 MB per 10-s clip): fine for an evaluation split
of a few thousand clips, not for a whole training corpus.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.core.features.mel import load_audio
from pipelines.core.io import content_sha256
from pipelines.shard import contract
from pipelines.shard.reader import iter_members

AUDIO_SUFFIXES = (".wav", ".flac")
SAMPLES_JSON = "samples.json"  # written by training/sample/generate.py write_outputs


@dataclass(frozen=True)
class Clip:
    key: str  # file stem or shard key
    text: str | None  # the prompt it was generated from, or the reference caption
    sha256: str  # of the encoded file bytes
    path: Path | None = None  # a sound file ...
    data: bytes | None = field(default=None, repr=False)  # ... or encoded bytes (a shard's flac member)
    labels: tuple[str, ...] = ()
    truth: str | None = (
        None  # a shard clip's ground-truth text (human caption, else label text): what held-out prompts are made of
    )

    def audio(self) -> tuple[np.ndarray, int]:
        """(float32 mono samples, sample rate)."""
        return load_audio(self.path if self.path is not None else io.BytesIO(self.data or b""))


def read_prompts_file(path: Path) -> list[str]:
    """One prompt per line; blank lines and `#` comments are skipped."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"prompts file not found: {path}")
    lines = (line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def generated_clips(folder: Path, prompts: Path | None = None) -> list[Clip]:
    """A `t2a sample` folder (its samples.json names each WAV and prompt; a prompts file, when given,
    must list the same prompts), or any folder of sound files, whose texts a prompts file supplies in
    file-name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"generated audio folder not found: {folder}")
    summary = folder / SAMPLES_JSON
    if summary.is_file():
        items = json.loads(summary.read_text())["items"]
        if prompts is not None:  # the file names what was asked for: samples.json must hold exactly those prompts
            asked, made = set(read_prompts_file(prompts)), {item["prompt"] for item in items}
            if asked != made:
                missing, extra = sorted(asked - made)[:3], sorted(made - asked)[:3]
                raise ValueError(
                    f"{summary} does not hold the prompts of {prompts}: not sampled {missing}, not in the file {extra}"
                )
        return [_file_clip(folder / item["wav"], item["prompt"]) for item in items]
    files = audio_files(folder)
    texts: list[str | None] = [None] * len(files)
    if prompts is not None:
        texts = list(read_prompts_file(prompts))
        if len(texts) != len(files):
            raise ValueError(
                f"{prompts} has {len(texts)} prompts but {folder} holds {len(files)} sound files; give one prompt per file, in file-name order"
            )
    return [_file_clip(path, text) for path, text in zip(files, texts)]


def audio_files(folder: Path) -> list[Path]:
    files = sorted(
        p for p in Path(folder).iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise FileNotFoundError(f"{folder} holds no sound files ({', '.join(AUDIO_SUFFIXES)})")
    return files


def _file_clip(path: Path, text: str | None) -> Clip:
    if not path.is_file():
        raise FileNotFoundError(f"sound file not found: {path} (listed in {SAMPLES_JSON}?)")
    return Clip(key=path.stem, text=text, sha256=content_sha256(path), path=path)


def reference_clips(reference: str | Path, split: str = "test") -> list[Clip]:
    """A shard corpus folder (root with <split>/shard-*.tar, or the split folder itself), a `t2a sample`
    folder (its prompts are the captions: one model's samples against another's), or a folder of sound files."""
    root = Path(reference)
    if not root.is_dir():
        raise FileNotFoundError(f"reference not found: {root} (a shard corpus folder or a folder of sound files)")
    if (root / SAMPLES_JSON).is_file():
        return generated_clips(root)
    shards = shard_paths(root, split)
    return (
        [clip for shard in shards for clip in shard_clips(shard)]
        if shards
        else [_file_clip(p, None) for p in audio_files(root)]
    )


def shard_paths(root: Path, split: str) -> list[Path]:
    for folder in (Path(root) / split, Path(root)):
        found = sorted(folder.glob("shard-*.tar"))
        if found:
            return found
    return []


def shard_clips(path: Path) -> list[Clip]:
    """The clips with audio in one shard; samples without a flac member are skipped (nothing to embed)."""
    clips = []
    for key, members in iter_members(path):
        if contract.AUDIO not in members:
            continue
        meta = contract.decode_json(members[contract.JSON])
        data = members[contract.AUDIO]
        labels = tuple(label["name"] for label in meta.get("labels", []))
        clips.append(
            Clip(
                key=key,
                text=caption(meta),
                sha256=hashlib.sha256(data).hexdigest(),
                data=data,
                labels=labels,
                truth=ground_truth(meta),
            )
        )
    return clips


def caption(meta: dict) -> str | None:
    """The caption a sample trains on: its selected caption, else its first human caption."""
    if meta.get("selected_caption"):
        return meta["selected_caption"]
    human = [c["text"] for c in meta.get("captions", []) if c.get("kind") == "human"]
    return human[0] if human else None


def ground_truth(meta: dict) -> str | None:
    """A sample's own text, never a pseudo-prompt: its first human caption, else its label text (AudioLDM §5)."""
    human = [c["text"] for c in meta.get("captions", []) if c.get("kind") == "human"]
    text = " ".join((human[0] if human else meta.get("label_text") or "").split())
    return text or None


PROMPT_FORMS = ("text", "photo", "sound")


def heldout_prompts(
    reference: str | Path, split: str = "test", limit: int | None = None, form: str = "text"
) -> list[str]:
    """Prompts no model trained on: each clip of a held-out split's ground-truth text (its first human
    caption, else its label text, AudioLDM §5), never the pseudo-prompt annotate selected for it;
    each text once, in shard and key order; at most `limit`.

    `form` "photo" / "sound": each label of the split's clips as CLIPSonic's queries instead — "a photo
    of [label]" for CLIP's text tower (CLIPSonic §3 "Data", the -ZS and -PD modes), "the sound of [label]"
    for a CLAP text tower (its CLAP-TTA baseline)."""
    if form not in PROMPT_FORMS:
        raise ValueError(f"unknown prompt form {form!r}; valid: {', '.join(PROMPT_FORMS)}")
    shards = shard_paths(Path(reference), split)
    if not shards:
        raise FileNotFoundError(f"{reference}: no shard of split {split!r} (root/<split>/shard-*.tar)")
    found: dict[str, str] = {}
    for shard in shards:
        for _, members in iter_members(shard):
            meta = contract.decode_json(members[contract.JSON])
            texts = [ground_truth(meta)] if form == "text" else _label_prompts(meta, form)
            for text in texts:
                if text and text.casefold() not in found:
                    found[text.casefold()] = text
    prompts = list(found.values())[:limit]
    if not prompts:
        wanted = "human caption or label text" if form == "text" else "label"
        raise ValueError(f"{reference}: split {split!r} has no {wanted} to prompt with")
    return prompts


def _label_prompts(meta: dict, form: str) -> list[str]:
    from pipelines.annotate.prompts.labels import distinct_names, photo_prompt, sound_prompt

    make = photo_prompt if form == "photo" else sound_prompt
    return [make(name) for name in distinct_names([label["name"] for label in meta.get("labels") or []])]


def pair_indices(generated: list[Clip], reference: list[Clip]) -> list[tuple[int, int]]:
    """(generated, reference) index pairs of clips with the same text (case and spacing ignored);
    clips without a text pair by key. Several matches give several pairs."""
    by_text: dict[str, list[int]] = {}
    for j, clip in enumerate(reference):
        by_text.setdefault(_pair_key(clip), []).append(j)
    return [(i, j) for i, clip in enumerate(generated) for j in by_text.get(_pair_key(clip), [])]


def _pair_key(clip: Clip) -> str:
    return " ".join(clip.text.lower().split()) if clip.text else f"key:{clip.key}"
