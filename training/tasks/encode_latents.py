"""`t2a encode-latents`: the corpus shards' mels through the trained VAE encoder, once, into latent shards.

    <run>/latents/<vae hash[:16]>/index.json                 corpus index (as `t2a shard` writes one)
    <run>/latents/<vae hash[:16]>/latents.json               the VAE's sha256, scaling factor and mel profile
    <run>/latents/<vae hash[:16]>/<split>/shard-NNNNNN.tar    + .stats.json and the split's wids index.json

A latent sample keeps the source sample's JSON and embeddings and replaces mels and media with
`latent.npy`: the VAE posterior [2·C, T/r, n_mels/r] (mean, then log-variance) in float16
(pipelines/shard/contract.py). The LDM then samples z = μ + σ·ε per step as if it ran the encoder
itself, without paying for it: at AudioLDM-S size the encoder costs more FLOPs per sample than a
UNet training step. Storing the full posterior rather than μ keeps that sampling exact.

The folder is keyed by the VAE checkpoint's hash (training.models.pipeline.model_hash), so a
retrained VAE never reads stale latents. Each latent shard is written atomically with its stats as
the commit marker, and records its source shard's sha256: a re-run skips shards that are done and
current, and redoes only the rest. Under `accelerate launch` each rank encodes every world-th shard.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import torch

from pipelines.core.features import get_profile
from pipelines.core.io import write_json_atomic
from pipelines.shard import contract, writer
from pipelines.shard import index as shard_index
from training.config import TrainConfig
from training.loop import command

log = logging.getLogger(__name__)
BATCH = 16
LATENTS_INFO = "latents.json"


def latents_location(config: TrainConfig) -> Path:
    """The latent corpus of the run's current VAE (its folder name is the VAE's hash)."""
    from training.models.pipeline import model_hash

    model = vae_model_dir(config)
    return config.latents_dir / model_hash(model)[:16]


def vae_model_dir(config: TrainConfig) -> Path:
    model = config.vae_dir / "model"
    if not (model / "config.json").is_file():
        raise FileNotFoundError(f"no trained VAE at {model}: run `t2a train vae --config …` first")
    return model


def encode(config: TrainConfig) -> Path:
    from accelerate import PartialState
    from diffusers import AutoencoderKL

    from training.models.pipeline import model_hash

    state = PartialState(cpu=config.device == "cpu")
    model_dir = vae_model_dir(config)
    vae_hash = model_hash(model_dir)
    out = config.latents_dir / vae_hash[:16]
    vae = AutoencoderKL.from_pretrained(model_dir).to(state.device).eval()
    profile = get_profile(config.data.profile)
    splits = _splits(config.data.shards, config.data.storage_options)
    for split, entries in splits.items():
        for i, entry in enumerate(entries):
            if i % state.num_processes == state.process_index:
                _encode_shard(vae, entry, out / split / Path(entry["url"]).name, profile.name, vae_hash, config)
    state.wait_for_everyone()
    if state.is_main_process:
        _write_indexes(out, splits, profile.name, vae_hash, float(vae.config.scaling_factor))
    return out


def _encode_shard(vae, entry: dict[str, Any], path: Path, profile: str, vae_hash: str, config: TrainConfig) -> None:
    if writer.is_complete(path) and writer.read_stats(path).get("source_sha256") == entry["sha256"]:
        log.info("%s: done, skipped", path)
        return
    samples = list(_raw_samples(entry["location"], config.data.storage_options))
    latents: dict[str, np.ndarray] = {}
    for start in range(0, len(samples), BATCH):
        chunk = samples[start : start + BATCH]
        mels = [contract.decode_npy(members[contract.mel_member(profile)]) for _, members in chunk]
        for (key, _), moments in zip(chunk, _moments(vae, mels)):
            latents[key] = moments
    rows = [(key, _latent_members(members, latents[key])) for key, members in samples]
    info = writer.write_shard(path, rows, check=contract.check_latent_sample)
    writer.write_stats(
        path,
        info,
        {"source_sha256": entry["sha256"], "source": entry["url"], "vae_sha256": vae_hash, "profile": profile},
    )
    log.info("%s: %d latents", path, info.samples)


@torch.inference_mode()
def _moments(vae, mels: list[np.ndarray]) -> list[np.ndarray]:
    from training.models.vae import encode_moments

    device = next(vae.parameters()).device
    batch = torch.from_numpy(np.stack(mels).astype(np.float32)).transpose(1, 2)[:, None].to(device)  # [B,1,T,M]
    moments = encode_moments(vae, batch)  # [B, 2C, T/r, M/r]
    return list(moments.float().cpu().numpy().astype(np.float16))


def _latent_members(members: dict[str, bytes], moments: np.ndarray) -> dict[str, bytes]:
    """The source sample's JSON and embeddings plus the latent; the JSON resealed, so its checksums
    covers the latent and no longer lists the mels and media left behind."""
    keep = {contract.embedding_member(n) for n in contract.EMBEDDINGS}
    out = {name: data for name, data in members.items() if name in keep}
    out[contract.LATENT] = contract.encode_npy(moments)
    return contract.seal(contract.SampleMeta.from_json(members[contract.JSON]), out)


def _raw_samples(location: str, storage_options: dict[str, Any]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {member: bytes}) per sample of one shard, read as a stream (local path or URL)."""
    key, members = None, {}
    with fsspec.open(location, "rb", **storage_options) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for item in tar:
            if not item.isfile():
                continue
            name_key, member = contract.split_name(item.name)
            if name_key != key and key is not None:
                yield key, members
                members = {}
            key = name_key
            members[member] = tar.extractfile(item).read()
    if key is not None:
        yield key, members


def _splits(location: str, storage_options: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """split → the wids entries of its shards, each with its absolute `location`."""
    root = location.rstrip("/")
    corpus = _read_json(f"{root}/{contract.INDEX_NAME}", storage_options)
    out = {}
    for split in sorted(corpus.get("splits", {})):
        spec = _read_json(f"{root}/{split}/{contract.INDEX_NAME}", storage_options)
        out[split] = [{**e, "location": f"{root}/{split}/{e['url']}"} for e in spec["shardlist"]]
    return out


def _read_json(url: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    try:
        with fsspec.open(url, "rb", **storage_options) as stream:
            return contract.decode_json(stream.read())
    except FileNotFoundError:
        raise FileNotFoundError(f"{url} not found: data.shards must point at a corpus written by `t2a shard`") from None


def _write_indexes(
    out: Path, splits: dict[str, list[dict[str, Any]]], profile: str, vae_hash: str, scaling: float
) -> None:
    stats = [writer.read_stats(out / split / Path(e["url"]).name) for split, entries in splits.items() for e in entries]
    shard_index.write_indexes(out, stats, vae_hash, [profile])  # config_hash: the VAE's
    write_json_atomic(out / LATENTS_INFO, {"vae_sha256": vae_hash, "scaling_factor": scaling, "profile": profile})


if __name__ == "__main__":  # `python -m training.tasks.encode_latents --config …` (accelerate launch, torchrun)
    command(__doc__, encode)
