"""`t2a train clap`: the eq. 12–14 loss by hand, Recall@k on constructed embeddings, and a tiny
contrastive run (loss falls, recall on the train pairs beats chance, export loads in annotate, resume)."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from shard_samples import make_meta
from train_corpus import CAPTIONS, smooth_mel

from pipelines.annotate.encoders import audio_windows, load_clap
from pipelines.annotate.encoders.base import CLAP_RATE
from pipelines.annotate.encoders.config import ClapConfig
from pipelines.shard import contract, index, writer
from training.config import load_config
from training.loop import read_metrics
from training.tasks import clap as train_clap
from training.tasks.clap import ClapExample, clap_window, contrastive_loss, recall_at_k

os.environ.setdefault("HF_HUB_OFFLINE", "1")
WINDOW_S = 0.25  # short windows keep the CPU run small; the export records it as max_length_s
# A 128x128 HTSAT input (64 mels x 2 time strips; window 4) instead of 256x256: ~8x less compute per step.
SMALL_HTSAT = {"audio_config": {"spec_size": 128, "freq_ratio": 2, "window_size": 4}}
FREQS = (300.0, 600.0, 1200.0, 2400.0, 4800.0)  # one tone per caption, so audio and text can be matched


# --- the loss ---------------------------------------------------------------------------------------


def test_contrastive_loss_matches_eq_12_to_14_by_hand():
    # Two pairs: audio→text logits [[2, 0], [1, 3]], text→audio logits [[1, 0], [0, 1]].
    a = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    l1 = -(math.log(math.e**2 / (math.e**2 + 1)) + math.log(math.e**3 / (math.e + math.e**3))) / 2  # eq. 13
    l2 = -(math.log(math.e / (math.e + 1)) * 2) / 2  # eq. 14
    assert contrastive_loss(a, t).item() == pytest.approx((l1 + l2) / 2, rel=1e-6)


def test_contrastive_loss_uses_both_directions():
    # Audio→text rows are perfect, text→audio rows uniform: only the audio→text term can be small.
    a = torch.tensor([[20.0, 0.0, 0.0], [0.0, 20.0, 0.0], [0.0, 0.0, 20.0]])
    uniform = torch.zeros(3, 3)
    assert contrastive_loss(a, uniform).item() == pytest.approx(math.log(3) / 2, abs=1e-6)
    assert contrastive_loss(uniform, a).item() == pytest.approx(math.log(3) / 2, abs=1e-6)
    # A logits matrix whose columns (not rows) are right is no better than chance for eq. 13.
    cols = torch.tensor([[5.0, 0.0], [5.0, 0.0]])
    assert contrastive_loss(cols, cols).item() > math.log(2) - 1e-6


# --- recall@k -----------------------------------------------------------------------------------------


def test_recall_at_k_on_a_constructed_set():
    # 4 pairs in 2-D: texts 0, 1, 2 point at their audio; text 3 points at audio 0 (its own audio is
    # the second most similar).
    audio = np.array([[1, 0], [0, 1], [-1, 0], [0.6, -0.8]], np.float32)
    text = np.array([[1, 0], [0, 1], [-1, 0], [1, -0.1]], np.float32)
    r = recall_at_k(audio, text, ks=(1, 2, 4))
    assert r["t2a@1"] == pytest.approx(3 / 4)
    assert r["t2a@2"] == pytest.approx(1.0)
    assert r["t2a@4"] == 1.0
    # Audio 0: text 0 (cos 1) beats text 3 (0.995); audio 3: text 3 (0.677) beats text 0 (0.6).
    assert r["a2t@1"] == pytest.approx(1.0)
    # Swapping the texts of pairs 0 and 1: t2a keeps only text 2; a2t keeps audios 2 and 3.
    swapped = text[[1, 0, 2, 3]]
    r = recall_at_k(audio, swapped, ks=(1,))
    assert r["t2a@1"] == pytest.approx(1 / 4) and r["a2t@1"] == pytest.approx(2 / 4)


def test_recall_at_k_groups_and_shapes():
    audio = np.eye(3, dtype=np.float32)
    text = np.eye(3, dtype=np.float32)[[1, 0, 2]]  # pairs 0 and 1 have swapped texts
    assert recall_at_k(audio, text, ks=(1,))["t2a@1"] == pytest.approx(1 / 3)
    same = recall_at_k(audio, text, ks=(1,), groups=["dog", "dog", "rain"])  # 0 and 1 share a caption
    assert same == {"t2a@1": 1.0, "a2t@1": 1.0}
    with pytest.raises(ValueError, match="one shape"):
        recall_at_k(audio, text[:2])


# --- the example --------------------------------------------------------------------------------------


def test_clap_window_repeat_pads_and_crops_deterministically():
    rng = np.random.default_rng
    short = np.arange(1, 4, dtype=np.float32)
    assert clap_window(short, CLAP_RATE, 7, rng(0)).tolist() == [1, 2, 3, 1, 2, 3, 0]
    long = np.arange(100, dtype=np.float32)
    a, b = clap_window(long, CLAP_RATE, 10, rng(5)), clap_window(long, CLAP_RATE, 10, rng(5))
    assert a.tolist() == b.tolist() and np.all(np.diff(a) == 1)
    assert clap_window(np.ones(16000, np.float32), 16000, 48000, rng(0)).shape == (48000,)  # resampled to 48 kHz


def test_example_needs_text_and_audio():
    key, members = _sample("x-000", "train", 0, caption="")
    sample = {"__key__": key, "json": json.loads(members["json"]), "flac": members["flac"]}
    sample["json"]["captions"], sample["json"]["label_text"] = [], None
    with pytest.raises(ValueError, match="no caption"):
        ClapExample(1000)(sample, np.random.default_rng(0))
    sample["json"]["selected_caption"] = "a dog barks"
    out = ClapExample(1000)(sample, np.random.default_rng(0))
    assert out["caption"] == "a dog barks" and out["wave"].shape == (1000,)
    with pytest.raises(ValueError, match="flac"):
        ClapExample(1000)({k: v for k, v in sample.items() if k != "flac"}, np.random.default_rng(0))


# --- training end to end -------------------------------------------------------------------------------


def _tone(freq: float, rng: np.random.Generator) -> bytes:
    t = np.arange(int(0.2 * CLAP_RATE)) / CLAP_RATE
    wave = 0.3 * np.sin(2 * np.pi * freq * rng.uniform(0.97, 1.03) * t + rng.uniform(0, 6))
    buffer = io.BytesIO()
    sf.write(buffer, wave.astype(np.float32), CLAP_RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _sample(key: str, split: str, n: int, caption: str | None = None) -> tuple[str, dict[str, bytes]]:
    rng = np.random.default_rng(n)
    mel, flac = smooth_mel(rng, 16), _tone(FREQS[n % 5], rng)
    meta = make_meta(
        key,
        mels={"audioldm": mel},
        audio=flac,
        split=split,
        selected_caption=CAPTIONS[n % 5] if caption is None else caption,
    )
    return key, contract.build_sample(meta, {"audioldm": mel}, audio=flac)


def _corpus(root: Path) -> Path:
    """Captions cycle through 5 texts and each caption has its own tone."""
    stats = []
    for split, (shards, per_shard) in {"train": (2, 10), "valid": (1, 10)}.items():
        for s in range(shards):
            samples = [_sample(f"{split}-{s:02d}-{i:03d}", split, s * per_shard + i) for i in range(per_shard)]
            path = root / split / f"shard-{s:06d}.tar"
            stats.append(writer.write_stats(path, writer.write_shard(path, samples), {"split": split}))
    index.write_indexes(root, stats, "0" * 64, ["audioldm"])
    return root


def _config(root: Path, corpus: Path, steps: int) -> Path:
    config = {
        "run": str(root / "run"),
        "seed": 0,
        "device": "cpu",
        "data": {"shards": str(corpus), "batch_size": 10, "shuffle_buffer": 10},
        "clap": {
            "window_seconds": WINDOW_S,
            "config": SMALL_HTSAT,
            "train": {"steps": steps, "optim": {"lr": 3e-3}, "ema_decay": 0.0, "checkpoint_every": 20, "log_every": 1},
        },
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("clap")
    corpus = _corpus(root / "shards")
    return root, train_clap.train(load_config(_config(root, corpus, 40)))


def test_training_lowers_the_loss_and_learns_the_train_pairs(trained):
    root, model_dir = trained
    losses = [m["loss"] for m in read_metrics(root / "run" / "clap") if "loss" in m]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    recall = json.loads((root / "run" / "clap" / "recall.json").read_text())
    assert recall["step"] == 40 and recall["pairs"] == 10 and set(recall) >= {"t2a@1", "a2t@10"}
    # Train pairs through annotate's backend: 5 captions, so chance Recall@1 is 1/5.
    encoder = load_clap(ClapConfig(backend="transformers", model=str(model_dir), window_seconds=WINDOW_S), "cpu")
    waves, captions = [], []
    for n in range(20):  # the train split: 2 shards × 10, sample n has caption n % 5
        audio, rate = sf.read(io.BytesIO(_sample("k", "train", n)[1]["flac"]), dtype="float32")
        waves.append(audio_windows(audio, rate, CLAP_RATE, round(WINDOW_S * CLAP_RATE))[0])
        captions.append(CAPTIONS[n % 5])
    r = recall_at_k(encoder.embed_audio(np.stack(waves)), encoder.embed_text(captions), ks=(1,), groups=captions)
    assert r["t2a@1"] >= 0.6 and r["a2t@1"] >= 0.6, r


def test_export_is_a_clap_folder_with_the_window(trained):
    _, model_dir = trained
    extractor = json.loads((model_dir / "processor_config.json").read_text())["feature_extractor"]
    assert extractor["max_length_s"] == WINDOW_S and extractor["nb_max_samples"] == WINDOW_S * CLAP_RATE
    assert json.loads((model_dir / "config.json").read_text())["audio_config"]["spec_size"] == 128
    with pytest.raises(Exception, match="window_seconds"):
        load_clap(ClapConfig(backend="transformers", model=str(model_dir)), "cpu")  # 10 s does not fit a 0.25-s model


def test_resume_through_the_cli_continues_from_the_checkpoint(trained):
    from typer.testing import CliRunner

    from pipelines.cli import app

    root, _ = trained
    config = _config(root, Path(load_config(root / "config.yaml").data.shards), 42)
    done = CliRunner().invoke(app, ["train", "clap", "--config", str(config)])
    assert done.exit_code == 0, done.output
    steps = [m["step"] for m in read_metrics(root / "run" / "clap") if "loss" in m]
    assert steps == list(range(1, 43))  # 41 and 42 appended, nothing redone
    latest = json.loads((root / "run" / "clap" / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == 42


def test_fine_tunes_from_an_init_folder(trained, tmp_path):
    root, model_dir = trained
    path = _config(tmp_path, Path(load_config(root / "config.yaml").data.shards), 2)
    config = yaml.safe_load(path.read_text())
    config["clap"] = {
        "init": str(model_dir),
        "train": {"steps": 2, "ema_decay": 0.5, "log_every": 1},
    }  # window from the folder
    path.write_text(yaml.safe_dump(config))
    out = train_clap.train(load_config(path))
    saved = json.loads((out / "config.json").read_text())["audio_config"]
    assert saved["spec_size"] == 128  # the init folder's architecture, not the demo default
    assert json.loads((out / "processor_config.json").read_text())["feature_extractor"]["max_length_s"] == WINDOW_S
    assert load_clap(ClapConfig(backend="transformers", model=str(out), window_seconds=WINDOW_S), "cpu").dim == 32


def test_global_loss_equals_clap_models_own_logits_in_one_process(tmp_path):
    import transformers

    from demo.models import build_clap
    from training.tasks.clap import global_contrastive_loss

    folder = build_clap(tmp_path / "clap")
    model = transformers.ClapModel.from_pretrained(folder)
    processor = transformers.ClapProcessor.from_pretrained(folder)
    waves = [np.sin(np.linspace(0, f, CLAP_RATE)).astype(np.float32) for f in (300, 900, 2000)]
    audio = processor.feature_extractor(waves, sampling_rate=CLAP_RATE, return_tensors="pt")
    text = processor.tokenizer(list(CAPTIONS[:3]), padding=True, return_tensors="pt")
    out = model(
        input_ids=text["input_ids"], attention_mask=text["attention_mask"], input_features=audio["input_features"]
    )
    ours = global_contrastive_loss(out.audio_embeds, out.text_embeds, model.logit_scale_a, model.logit_scale_t)
    torch.testing.assert_close(ours, contrastive_loss(out.logits_per_audio, out.logits_per_text))


def test_two_ranks_contrast_over_the_global_batch_and_get_the_one_process_gradient(tmp_path):
    """LAION-CLAP's gather: 2 gloo ranks with 3 pairs each give the loss and (DDP-averaged) gradient
    of one process on all 6 pairs; without the gather each rank would only see 3 negatives."""
    import socket

    import torch.multiprocessing as mp

    from training.tasks.clap import global_contrastive_loss

    generator = torch.Generator().manual_seed(1)
    audio, text = torch.randn(6, 4, generator=generator), torch.randn(6, 4, generator=generator)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    from clap_ranks import ranks_gradient

    mp.spawn(ranks_gradient, args=(2, port, audio, text, tmp_path / "rank0.pt"), nprocs=2, join=True)
    ranks = torch.load(tmp_path / "rank0.pt", weights_only=True)
    torch.manual_seed(0)
    proj, scale = torch.nn.Linear(4, 3), torch.nn.Parameter(torch.tensor(1.5))
    norm = lambda x: torch.nn.functional.normalize(proj(x), dim=-1)  # noqa: E731
    loss = global_contrastive_loss(norm(audio), norm(text), scale, scale)
    loss.backward()
    torch.testing.assert_close(ranks["loss"], loss.detach())
    torch.testing.assert_close(ranks["grads"][0], proj.weight.grad)
    torch.testing.assert_close(ranks["grads"][1], scale.grad)
