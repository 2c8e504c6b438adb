"""The spectrogram codebook (training/models/vq.py, `t2a train vq`), the VGGish-ish classifier and `t2a encode-tokens`."""

from __future__ import annotations

import json

import numpy as np
import torch
from tiny_tokens import K

from pipelines.shard import contract
from pipelines.shard.reader import iter_members
from training.config import CodebookConfig, load_config
from training.loop import read_metrics
from training.models.vq import (
    CodebookHealth,
    build_codebook,
    decode_indices,
    encode_indices,
    flatten_column_major,
    grid_shape,
    unflatten_column_major,
)
from training.tasks import encode_tokens


def metric(folder, key):
    return [m[key] for m in read_metrics(folder) if key in m]


def test_the_diffsound_preset_turns_a_10_s_mel_into_53_by_5_tokens_and_back():
    config = load_config("training/configs/diffsound.yaml").codebook
    assert (config.codebook_size, config.code_dim) == (256, 256)
    tiny = build_codebook(
        config.model_copy(
            update={"block_out_channels": [8] * 5, "layers_per_block": 1, "norm_num_groups": 4, "code_dim": 4}
        )
    )
    mel = torch.rand(1, 1, 860, 80)
    indices = encode_indices(tiny, mel)
    assert indices.shape == (1, 53, 5) == (1, *grid_shape(tiny, 860, 80))
    assert 0 <= int(indices.min()) and int(indices.max()) < 256
    assert decode_indices(tiny, indices).shape == (1, 1, 848, 80)  # 53·16 frames
    assert grid_shape(tiny, 800, 80) == (50, 5)  # Li et al. 2023's 800 × 80 (vqgan-32k)


def test_column_major_flattening_lists_each_time_columns_frequency_codes_in_turn():
    grid = torch.tensor([[[0, 1, 2], [10, 11, 12]]])  # [B, T' = 2, F' = 3]: code f + 10·t
    sequence = flatten_column_major(grid)
    assert sequence.tolist() == [[0, 1, 2, 10, 11, 12]]
    assert unflatten_column_major(sequence, (2, 3)).equal(grid)


def test_codebook_health_counts_usage_perplexity_and_restarts_dead_codes():
    vq = build_codebook(
        CodebookConfig(codebook_size=8, code_dim=4, block_out_channels=[4, 4], layers_per_block=1, norm_num_groups=2)
    )
    health = CodebookHealth(8, decay=0.5, dead_usage=0.05)
    for _ in range(6):
        logs = health.observe(torch.tensor([[0, 0, 1, 1]]))
    assert logs["usage"] == 2 / 8 and abs(logs["perplexity"] - 2.0) < 1e-9 and logs["dead_codes"] == 6
    z = torch.randn(1, 4, 3, 3)
    before = vq.quantize.embedding.weight.detach().clone()
    assert health.restart(vq, z, torch.Generator().manual_seed(0)) == 6
    after = vq.quantize.embedding.weight.detach()
    assert after[:2].equal(before[:2]) and not after[2:].equal(before[2:])
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    assert all((flat == row).all(1).any() for row in after[2:])  # restarted at encoder outputs


def test_the_codebook_reconstruction_falls_its_usage_stays_above_a_floor_and_health_is_logged(token_run):
    config = load_config(token_run)
    rec = metric(config.codebook_dir, "rec")
    assert len(rec) == 20 and np.mean(rec[-5:]) < 0.75 * np.mean(rec[:5])
    assert min(metric(config.codebook_dir, "valid_usage")) >= 2 / K  # not collapsed to one code
    for key in ("usage", "perplexity", "dead_codes", "restarted", "perceptual", "commitment", "codebook"):
        assert len(metric(config.codebook_dir, key)) == 20
    assert max(metric(config.codebook_dir, "perceptual")) > 0
    assert sum(metric(config.codebook_dir, "restarted")) > 0  # unused codes were restarted (every 5 steps)
    assert any(v > 0 for v in metric(config.codebook_dir, "disc_loss"))  # the discriminator joined at step 12
    assert (config.vggishish_dir / "model" / "config.json").is_file()
    assert len(metric(config.vggishish_dir, "loss")) == 4 and metric(config.vggishish_dir, "valid_accuracy")


def test_token_shards_are_keyed_by_the_codebook_hold_uint16_grids_and_a_rerun_skips_them(token_run):
    config = load_config(token_run)
    location = encode_tokens.tokens_location(config)
    info = json.loads((location / "tokens.json").read_text())
    assert info["codebook_sha256"].startswith(location.name) and info["codebook_size"] == K
    shards = sorted((location / "train").glob("*.tar"))
    assert len(shards) == 4 and (location / "valid" / "index.json").is_file()
    key, members = next(iter_members(shards[0]))
    assert sorted(members) == ["clap_audio.npy", "json", "tokens.npy"]
    grid = contract.decode_npy(members["tokens.npy"])
    assert grid.dtype == np.uint16 and grid.shape == (32 // 4, 64 // 4) and int(grid.max()) < K
    before = {p: p.stat().st_mtime_ns for p in shards}
    encode_tokens.encode(config)
    assert {p: p.stat().st_mtime_ns for p in shards} == before


def test_encode_tokens_leaves_out_a_corrupt_sample_records_it_and_redoes_a_changed_shard(token_run, tmp_path):
    """A flipped mel byte (fails its checksum) is skipped and named in the shard's stats; the other samples are kept."""
    import os
    import shutil

    import yaml

    from pipelines.shard import writer

    source = load_config(token_run)
    shards = tmp_path / "shards"
    shutil.copytree(source.data.shards, shards)
    target = shards / "train" / "shard-000000.tar"
    rows = [(key, dict(members)) for key, members in iter_members(target)]
    member = contract.mel_member("audioldm")
    broken = bytearray(rows[0][1][member])
    broken[-3] ^= 0xFF
    rows[0][1][member] = bytes(broken)
    target.unlink()
    writer.write_shard(target, rows, check=lambda members: [])
    raw = yaml.safe_load(token_run.read_text())
    raw["run"], raw["data"]["shards"] = str(tmp_path / "run"), str(shards)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    config.run.mkdir(parents=True)
    os.symlink(source.codebook_dir, config.codebook_dir)
    location = encode_tokens.encode(config)
    stats = writer.read_stats(location / "train" / "shard-000000.tar")
    assert list(stats["skipped"]) == [rows[0][0]] and "checksum" in stats["skipped"][rows[0][0]]
    keys = [key for key, _ in iter_members(location / "train" / "shard-000000.tar")]
    assert keys == [key for key, _ in rows[1:]]
