"""`t2a encode-tokens`: the corpus shards' mels through the trained codebook's encoder, once, into token shards.

    <run>/tokens/<codebook hash[:16]>/index.json               corpus index (as `t2a shard` writes one)
    <run>/tokens/<codebook hash[:16]>/tokens.json              the codebook's sha256, K, grid and mel profile
    <run>/tokens/<codebook hash[:16]>/<split>/shard-NNNNNN.tar  + .stats.json and the split's wids index.json

A token sample keeps the source sample's JSON and embeddings and replaces mels and media with
`tokens.npy`: the codebook indices [T', F'] (time rows, frequency columns; training/models/vq.py) as
uint16 (K ≤ 65 536), so `t2a train ar|dd` never pay for the encoder. As `t2a encode-latents` does
(training/tasks/encode_latents.py, whose shard reading and writing this reuses): the folder is keyed by
the codebook's hash, so a retrained codebook never reads stale tokens; each shard is written atomically
with its stats as the commit marker and records its source shard's sha256, so a re-run skips shards that
are done and current and redoes only the rest; under `accelerate launch` each rank encodes every
world-th shard. A source sample whose mel is missing or cannot be decoded is left out of its token shard
and counted (`skipped` in the shard's stats, with the reason), as the loader counts a broken sample.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.core.features import get_profile
from pipelines.core.io import write_json_atomic
from pipelines.shard import contract, writer
from pipelines.shard import index as shard_index
from training.config import TrainConfig
from training.loop import command
from training.tasks.encode_latents import _raw_samples, _splits

log = logging.getLogger(__name__)
BATCH = 16
TOKENS_INFO = "tokens.json"


def codebook_model_dir(config: TrainConfig) -> Path:
    model = config.codebook_dir / "model"
    if not (model / "config.json").is_file():
        raise FileNotFoundError(f"no trained codebook at {model}: run `t2a train vq --config …` first")
    return model


def tokens_location(config: TrainConfig) -> Path:
    """The token corpus of the run's current codebook (its folder name is the codebook's hash)."""
    from training.models.pipeline import model_hash

    return config.tokens_dir / model_hash(codebook_model_dir(config))[:16]


def read_tokens_info(location: Path) -> dict[str, Any]:
    path = Path(location) / TOKENS_INFO
    if not path.is_file():
        raise FileNotFoundError(f"no token shards at {location}: run `t2a encode-tokens --config …` first")
    return contract.decode_json(path.read_bytes())


def encode(config: TrainConfig) -> Path:
    from accelerate import PartialState
    from diffusers import VQModel

    from training.models.pipeline import model_hash
    from training.models.vq import codebook_size, grid_shape

    state = PartialState(cpu=config.device == "cpu")
    model_dir = codebook_model_dir(config)
    digest = model_hash(model_dir)
    out = config.tokens_dir / digest[:16]
    vq = VQModel.from_pretrained(model_dir).to(state.device).eval()
    if codebook_size(vq) > 65_536:
        raise ValueError(f"a codebook of {codebook_size(vq)} codes does not fit uint16 token shards")
    profile = get_profile(config.data.profile)
    splits = _splits(config.data.shards, config.data.storage_options)
    for split, entries in splits.items():
        for i, entry in enumerate(entries):
            if i % state.num_processes == state.process_index:
                _encode_shard(vq, entry, out / split / Path(entry["url"]).name, profile.name, digest, config)
    state.wait_for_everyone()
    if state.is_main_process:
        stats = [writer.read_stats(out / s / Path(e["url"]).name) for s, entries in splits.items() for e in entries]
        shard_index.write_indexes(out, stats, digest, [profile.name])
        grid = _one_grid(stats, grid_shape(vq, profile.frames, profile.n_mels))
        info = {
            "codebook_sha256": digest,
            "codebook_size": codebook_size(vq),
            "grid": list(grid),
            "profile": profile.name,
        }
        write_json_atomic(out / TOKENS_INFO, info)
    return out


def _one_grid(stats: list[dict[str, Any]], default: tuple[int, int]) -> tuple[int, int]:
    """The token grid every sample has (the generators train on one sequence length)."""
    grids = {tuple(grid) for item in stats for grid in item.get("grids", [])}
    if len(grids) > 1:
        raise ValueError(
            f"the corpus mels give token grids of {len(grids)} shapes ({sorted(grids)[:3]}): "
            "a token generator needs one; write the shards with one mel length (the profile pads to it)"
        )
    return next(iter(grids), default)


def _encode_shard(vq, entry: dict[str, Any], path: Path, profile: str, digest: str, config: TrainConfig) -> None:
    if writer.is_complete(path) and writer.read_stats(path).get("source_sha256") == entry["sha256"]:
        log.info("%s: done, skipped", path)
        return
    member = contract.mel_member(profile)
    good, skipped = [], {}
    for key, members in _raw_samples(entry["location"], config.data.storage_options):
        try:
            mel = contract.decode_npy(members[member])
            meta = contract.SampleMeta.from_json(members[contract.JSON])
            if mel.ndim != 2 or contract.checksum_problems(
                {member: members[member], contract.JSON: members[contract.JSON]}
            ):
                raise contract.ContractError(f"{member} is {list(mel.shape)} or fails its checksum")
        except (KeyError, contract.ContractError, ValueError) as error:
            reason = f"{type(error).__name__}: {error}"
            skipped[key] = reason
            log.warning("%s: sample %s skipped (%s)", path, key, reason)
            continue
        good.append((key, members, meta, mel))
    tokens: dict[str, np.ndarray] = {}
    for start in range(0, len(good), BATCH):
        chunk = good[start : start + BATCH]
        for (key, *_), grid in zip(chunk, _indices(vq, [mel for *_, mel in chunk])):
            tokens[key] = grid
    rows = [(key, _token_members(members, meta, tokens[key])) for key, members, meta, _ in good]
    info = writer.write_shard(path, rows, check=contract.check_token_sample)
    grids = sorted({tuple(grid.shape) for grid in tokens.values()})
    extra = {"source_sha256": entry["sha256"], "source": entry["url"], "codebook_sha256": digest, "profile": profile}
    writer.write_stats(path, info, extra | {"skipped": skipped, "grids": [list(g) for g in grids]})
    log.info("%s: %d token grids, %d skipped", path, info.samples, len(skipped))


@torch.inference_mode()
def _indices(vq, mels: list[np.ndarray]) -> list[np.ndarray]:
    from training.models.vq import encode_indices

    batch = torch.from_numpy(np.stack(mels).astype(np.float32)).transpose(1, 2)[:, None]  # [B, 1, T, M]
    return list(encode_indices(vq, batch.to(vq.device)).cpu().numpy().astype(np.uint16))


def _token_members(members: dict[str, bytes], meta, grid: np.ndarray) -> dict[str, bytes]:
    keep = {contract.embedding_member(n) for n in contract.EMBEDDINGS}
    out = {name: data for name, data in members.items() if name in keep}
    out[contract.TOKENS] = contract.encode_npy(grid)
    return contract.seal(meta, out)


if __name__ == "__main__":  # `python -m training.tasks.encode_tokens --config …` (accelerate launch, torchrun)
    command(__doc__, encode)
