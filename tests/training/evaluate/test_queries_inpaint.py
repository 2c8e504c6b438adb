"""`t2a evaluate-queries` (CLIPSonic §3 / Table 2 per query mode) and `t2a evaluate-inpaint` (Make-An-Audio
Table 2: wide / narrow masks) on a tiny mel-space clip-image model, a tiny prior, CLIP and CLAP."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
import yaml
from tiny_training import build_tiny_clip
from train_corpus import build_train_corpus
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from training.config import load_config  # noqa: E402
from training.evaluate.inpaint import evaluate_inpaint_command  # noqa: E402
from training.evaluate.inpaint import format_rows as format_inpaint  # noqa: E402
from training.evaluate.queries import evaluate_queries_command  # noqa: E402
from training.evaluate.queries import format_rows as format_queries  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[3] / "training" / "configs"
TINY_UNET = {"block_out_channels": [8, 16], "layers_per_block": 1, "attention_head_dim": 2, "norm_num_groups": 4}
PHOTOS = ["a photo of dog", "a photo of rain", "a photo of car", "a photo of bell"]  # the test split's labels


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    """clipsonic-mel on a tiny corpus (train / valid / test, 3 CLIP frames per clip): the mel model trained
    2 steps, its prior 4 steps, a random CLAP and a label classifier on its embeddings."""
    from demo.models import build_clap
    from training.evaluate.embedders import train_label_classifier
    from training.tasks import ldm as train_ldm
    from training.tasks import prior as train_prior

    root = tmp_path_factory.mktemp("queries")
    splits = {"train": (1, 4), "valid": (1, 4), "test": (1, 4)}
    shards = build_train_corpus(root / "shards", frames=80, profile="clipsonic", clip_frames=3, splits=splits)
    raw = yaml.safe_load((CONFIGS / "clipsonic-mel.yaml").read_text())
    raw.update(run=str(root / "run"), device="cpu")
    raw["data"].update(shards=str(shards), crop_frames=16, batch_size=4, workers=0, shuffle_buffer=8)  # 16 × 64 mels
    raw["ldm"].update(encoders={"clip": str(build_tiny_clip(tmp_path_factory.getbasetemp()))}, unet=TINY_UNET)
    raw["ldm"]["train"].update(steps=2, checkpoint_every=2, log_every=1, ema_decay=0.0)
    raw["prior"] = {"width": 32, "layers": 1, "heads": 2, "sample_steps": 4, "batch_size": 4}
    raw["prior"]["train"] = {"steps": 4, "ema_decay": 0.0, "checkpoint_every": 4, "log_every": 1}
    raw["sample"].update(steps=1, seconds=None)
    config = root / "clipsonic-mel.yaml"
    config.write_text(yaml.safe_dump(raw))
    model = train_ldm.train(load_config(config))
    prior = train_prior.train(load_config(config))
    clap = build_clap(root / "clap")
    labels = train_label_classifier(shards, clap, root / "labels", epochs=20, seed=0)
    paths = {"config": config, "model": model, "prior": prior, "clap": clap, "labels": labels, "shards": shards}
    return paths | {"cache": root / "embeddings"}  # shared by the commands: the same WAVs are embedded once


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("evaluate-queries")(evaluate_queries_command)
    app.command("evaluate-inpaint")(evaluate_inpaint_command)
    return app


def _queries(run: dict[str, Path], out: Path, *extra: str):
    args = ["evaluate-queries", "-c", str(run["config"]), "--clap", str(run["clap"]), "--out", str(out)]
    return CliRunner().invoke(_app(), [*args, "--cache-dir", str(run["cache"]), "--device", "cpu", *extra])


def test_evaluate_queries_writes_one_row_per_mode(run, tmp_path):
    from training.models.pipeline import load_bundle

    first = tmp_path / "a" / "queries.json"
    done = _queries(run, first, "--batch-size", "3")
    assert done.exit_code == 0, done.output
    assert all(mode in done.output for mode in ("text-zs", "text-prior", "image")) and "written:" in done.output
    result = json.loads(first.read_text())
    assert result["schema"] == "t2a.query-evaluation/1" and result["clips"] == 4 and result["split"] == "test"
    assert [row["mode"] for row in result["rows"]] == ["text-zs", "text-prior", "image"]
    assert result["prior"] == str(run["prior"])  # <run>/prior/model, found without --prior
    for row in result["rows"]:
        assert row["samples"] == 4
        for name in ("fd_clap", "clap_score", "prompt_top1", "cos_to_frames"):
            assert np.isfinite(row[name]), (row["mode"], name)
        counts = result["modes"][row["mode"]]["counts"]
        assert counts["generated"] == 4 and counts["reference"] == 4  # the test split's clips
        samples = json.loads((first.parent / "queries" / row["mode"] / "samples.json").read_text())
        assert [item["prompt"] for item in samples["items"]] == PHOTOS
        assert samples["request"]["query"] == row["mode"] and [item["seed"] for item in samples["items"]] == [
            0,
            1,
            2,
            3,
        ]
    # Table 2's cosine, recomputed: the CLIP text embedding of each photo prompt against its clip's frames
    # (each frame is its label's direction plus noise: far from a random CLIP's text embedding) ...
    from training.data.loader import iter_batches
    from training.tasks.prior import PriorExample

    frames = [
        torch.nn.functional.normalize(torch.as_tensor(f).float(), dim=-1)
        for batch in iter_batches(str(run["shards"]), "test", PriorExample(), batch_size=4)
        for f in batch["clip_image"]
    ]
    text = load_bundle(run["model"]).conditioner.from_prompts(PHOTOS)[:, 0]
    expected = sum(float((f @ t).sum()) for f, t in zip(frames, text)) / sum(len(f) for f in frames)
    rows = {row["mode"]: row for row in result["rows"]}
    assert rows["text-zs"]["cos_to_frames"] == pytest.approx(expected, abs=1e-5)
    # ... while an image query, one of the clip's own frames, is close to its other frames.
    assert rows["image"]["cos_to_frames"] > 0.6 > abs(rows["text-zs"]["cos_to_frames"])
    table = format_queries(result).splitlines()
    assert table[0].startswith("| mode | samples | FD (CLAP) ↓ | CLAP score ↑") and len(table) == 5
    assert table[3].startswith("| text-prior | 4 | ")


def test_the_same_seed_gives_the_same_json_and_a_missing_prior_is_one_error(run, tmp_path):
    first, second = tmp_path / "a" / "queries.json", tmp_path / "b" / "queries.json"
    for out in (first, second):
        done = _queries(run, out, "--modes", "text-prior,image", "--limit", "2")
        assert done.exit_code == 0, done.output
    assert first.read_bytes() == second.read_bytes()
    assert [row["mode"] for row in json.loads(first.read_text())["rows"]] == ["text-prior", "image"]
    made = _stamps(first.parent / "queries")
    assert len(made) == 4
    kept = _queries(run, first, "--modes", "text-prior,image", "--limit", "2")  # a re-run keeps what it made
    assert kept.exit_code == 0, kept.output
    assert _stamps(first.parent / "queries") == made and first.read_bytes() == second.read_bytes()
    reseeded = _queries(run, first, "--modes", "image", "--limit", "2", "--seed", "1")  # other queries: sampled anew
    assert reseeded.exit_code == 0, reseeded.output
    assert all(made[path] != stamp for path, stamp in _stamps(first.parent / "queries" / "image").items())

    raw = yaml.safe_load(run["config"].read_text())
    raw["run"] = str(tmp_path / "elsewhere")  # no <run>/prior/model there
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    common = ["evaluate-queries", "-c", str(config), "--clap", str(run["clap"]), "--checkpoint", str(run["model"])]
    wrong = CliRunner().invoke(_app(), [*common, "--out", str(tmp_path / "q.json"), "--device", "cpu"])
    assert wrong.exit_code == 2 and "text-prior queries need a diffusion prior" in wrong.output
    assert "Traceback" not in wrong.output and not (tmp_path / "q.json").exists()
    wrong = CliRunner().invoke(_app(), [*common, "--prior", str(tmp_path), "--device", "cpu"])
    assert wrong.exit_code == 2 and "no diffusion prior there" in wrong.output
    wrong = CliRunner().invoke(_app(), [*common, "--modes", "text-zs,audio", "--device", "cpu"])
    assert wrong.exit_code == 2 and "unknown query modes ['audio']" in wrong.output
    wrong = CliRunner().invoke(_app(), [*common[:3], "--clap", str(tmp_path / "none"), "--device", "cpu"])
    assert wrong.exit_code == 2 and "--clap" in wrong.output and "config.json missing" in wrong.output
    wrong = _inpaint(run, tmp_path / "i.json", "--classifier", str(tmp_path / "none"))  # before any sampling
    assert wrong.exit_code == 2 and "--classifier" in wrong.output and not (tmp_path / "i").exists()


def _stamps(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in sorted(folder.rglob("*.wav"))}


def _inpaint(run: dict[str, Path], out: Path, *extra: str):
    args = ["evaluate-inpaint", "-c", str(run["config"]), "--clap", str(run["clap"]), "--out", str(out)]
    return CliRunner().invoke(_app(), [*args, "--cache-dir", str(run["cache"]), "--device", "cpu", *extra])


def test_evaluate_inpaint_scores_wide_and_narrow_masks_against_the_originals(run, tmp_path):
    from training.evaluate.inpaint import masks

    first, second = tmp_path / "a" / "inpaint.json", tmp_path / "b" / "inpaint.json"
    done = _inpaint(run, first, "--classifier", str(run["labels"]), "--limit", "3")
    assert done.exit_code == 0, done.output
    result = json.loads(first.read_text())
    assert result["schema"] == "t2a.inpaint-evaluation/1" and result["checkpoint"] == str(run["model"])
    assert result["path"] == "zero-shot (AudioLDM §4 eq. 11)"  # no <run>/inpaint/model: the LDM itself
    assert result["grid"] == [1, 16, 64] and [row["masks"] for row in result["rows"]] == ["wide", "narrow"]
    for row in result["rows"]:
        assert row["clips"] == 3 and np.isfinite(row["fd_clap"]) and np.isfinite(row["kl"])
        expected = masks(row["masks"], 3, (16, 64), 0).flatten(1).mean(dim=1)
        assert row["masked"] == pytest.approx(float(expected.mean()))
        counts = result["masks"][row["masks"]]["counts"]
        assert counts["generated"] == counts["reference"] == counts["pairs"] == 3  # each clip with its original
    assert format_inpaint(result).splitlines()[3].startswith("| narrow | 3 | ")
    names = lambda kind: sorted(p.name for p in (first.parent / "inpaint" / kind).glob("*.wav"))  # noqa: E731
    assert names("wide") == names("narrow") == names("original") and len(names("original")) == 3
    again = _inpaint(run, second, "--classifier", str(run["labels"]), "--limit", "3")
    assert again.exit_code == 0, again.output
    assert first.read_bytes() == second.read_bytes()
    made = _stamps(first.parent / "inpaint")
    kept = _inpaint(run, first, "--classifier", str(run["labels"]), "--limit", "3")  # a re-run keeps what it made
    assert kept.exit_code == 0, kept.output
    assert _stamps(first.parent / "inpaint") == made and len(made) == 9 and first.read_bytes() == second.read_bytes()


def test_inpainted_clips_keep_the_observed_region_zero_shot_and_fine_tuned(run, tmp_path):
    """Eq. 11's last step re-imposes z_ob: a mel-space model's output equals the original outside the mask.
    A fine-tuned model (the mask as input channels) takes the other path and keeps the shapes."""
    from training.evaluate.inpaint import InpaintSettings, evaluate_inpaint, held_out, masks
    from training.models.pipeline import load_bundle
    from training.sample.generate import Observed, Request, decode, generate
    from training.tasks import inpaint as train_inpaint

    config = load_config(run["config"])
    bundle = load_bundle(run["model"])
    clips = held_out(config, bundle, "test", 2, 0, "cpu")
    assert clips.keys == ["test-00-000", "test-00-001"] and clips.latents.shape == (2, 1, 16, 64)
    mask = masks("wide", 2, (16, 64), 0)
    request = Request(clips.keys, steps=1, seed=0)
    mels, _ = generate(bundle, request, condition=clips.conditions, observed=Observed(clips.latents, 1 - mask))
    original, _ = decode(bundle, clips.latents, request)
    kept = mask[:, 0] == 0
    assert kept.any() and (~kept).any()
    torch.testing.assert_close(mels[kept], original[kept])
    assert not torch.allclose(mels[~kept], original[~kept])

    raw = yaml.safe_load(run["config"].read_text())
    raw["run"] = str(tmp_path / "run")  # the module's run keeps no inpainting model (the default checkpoint)
    raw["inpaint"] = {"init": str(run["model"]), "masks": ["thin", "frame"], "span": 4}
    raw["inpaint"]["train"] = {"steps": 1, "ema_decay": 0.0, "log_every": 1}
    path = tmp_path / "inpaint.yaml"
    path.write_text(yaml.safe_dump(raw))
    fine_tuned = train_inpaint.train(load_config(path))
    settings = InpaintSettings(clap=run["clap"], checkpoint=fine_tuned, limit=2, out=tmp_path / "ft.json")
    result = evaluate_inpaint(load_config(path), settings)
    assert result["path"] == "fine-tuned (Make-An-Audio §4.2)" and result["clips"] == 2
    assert [row["masks"] for row in result["rows"]] == ["wide", "narrow"] and "kl" not in result["rows"][0]
