"""training/evaluate*.py: FD/KL/IS/CLAP-score values, the label classifier, the embedding cache and
the `t2a evaluate` command, on a tiny random CLAP and a tiny labelled shard corpus."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import typer
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from shard_samples import make_meta  # noqa: E402
from train_corpus import smooth_mel  # noqa: E402

from pipelines.shard import contract, writer  # noqa: E402
from training.evaluate import embedders as evaluate_models  # noqa: E402
from training.evaluate.data import generated_clips, reference_clips  # noqa: E402
from training.evaluate.embedders import ClapEmbedder, LabelClassifier, train_label_classifier  # noqa: E402
from training.evaluate.metrics import (
    bernoulli_kl,
    clap_score,
    frechet_distance,
    gaussian_stats,
    inception_score,
    paired_kl,
)  # noqa: E402
from training.evaluate.run import evaluate, evaluate_command, format_table, train_classifier_command  # noqa: E402
from training.sample.io import write_json, write_wav  # noqa: E402

RATE = 16000
CAPTIONS = {"low": "a low hum", "high": "a high whistle"}


def tone(freq: float, seconds: float = 0.5, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def flac_bytes(wave: np.ndarray, rate: int) -> bytes:
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _sample(key: str, split: str, label: str, freq: float, rng: np.random.Generator):
    mel = smooth_mel(rng, 16)
    flac = flac_bytes(tone(freq, rate=48000), 48000)
    meta = make_meta(
        key,
        mels={"audioldm": mel},
        audio=flac,
        split=split,
        selected_caption=CAPTIONS[label],
        labels=[{"mid": None, "name": label}, {"mid": None, "name": "tone"}],
    )
    return key, contract.build_sample(meta, {"audioldm": mel}, audio=flac)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """train: 12 tones, "low" (< 400 Hz) or "high" (> 3 kHz), each also "tone"; test: 4 more."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        samples = []
        for i in range(count):
            label = ("low", "high")[i % 2]
            freq = rng.uniform(100, 400) if label == "low" else rng.uniform(3000, 6000)
            samples.append(_sample(f"{split}-{i:03d}", split, label, freq, rng))
        writer.write_shard(root / split / "shard-000000.tar", samples)
    return root


@pytest.fixture(scope="module")
def clap(tmp_path_factory) -> Path:
    from demo.models import build_clap

    return build_clap(tmp_path_factory.mktemp("clap"))


@pytest.fixture(scope="module")
def classifier(corpus, clap, tmp_path_factory) -> Path:
    return train_label_classifier(corpus, clap, tmp_path_factory.mktemp("labels"), epochs=150, seed=0)


@pytest.fixture
def generated(tmp_path) -> Path:
    """A `t2a sample`-style folder: 4 WAVs + samples.json, prompts = the test captions."""
    folder = tmp_path / "samples"
    items = []
    for i, (label, freq) in enumerate((("low", 200.0), ("high", 4000.0), ("low", 300.0), ("high", 5000.0))):
        write_wav(folder / f"{i:03d}-{label}.wav", tone(freq), RATE)
        items.append({"index": i, "prompt": CAPTIONS[label], "seed": i, "wav": f"{i:03d}-{label}.wav", "png": "x.png"})
    write_json(folder / "samples.json", {"sample_rate": RATE, "items": items})
    return folder


# --- metrics ------------------------------------------------------------------------------------------


def test_fd_matches_the_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(1)
    mu1, mu2, a, b = rng.normal(size=5), rng.normal(size=5), rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_fd_matches_scipy_sqrtm_on_random_spd_matrices():
    rng = np.random.default_rng(2)
    for _ in range(3):
        x, y = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
        s1, s2 = x @ x.T + 0.1 * np.eye(6), y @ y.T + 0.1 * np.eye(6)
        mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
        root = scipy.linalg.sqrtm(s1 @ s2).real
        expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fd_of_a_set_with_itself_is_zero_and_singular_estimates_stay_finite():
    x = np.random.default_rng(3).normal(size=(5, 16))  # N < D: a singular covariance
    mu, sigma = gaussian_stats(x)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    value = frechet_distance(*gaussian_stats(x), *gaussian_stats(x + 1.0))
    assert value == pytest.approx(16.0, rel=1e-6)  # a shift of 1 in 16 dimensions, same covariance
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(x[:1])


def test_kl_is_the_mean_of_per_label_bernoulli_kls():
    p, q = np.array([[0.5, 0.9]]), np.array([[0.25, 0.9]])
    by_hand = (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75) + 0.0) / 2
    assert bernoulli_kl(p, q)[0] == pytest.approx(by_hand)
    assert paired_kl(np.vstack([p, p]), np.vstack([q, p])) == pytest.approx(by_hand / 2)
    assert paired_kl(p, p) == pytest.approx(0.0, abs=1e-12)
    assert np.isfinite(paired_kl(np.array([[1.0]]), np.array([[0.0]])))  # saturated sigmoids are clipped


def test_inception_score_on_fixed_posteriors():
    # Normalised per clip: [.75, .25] and [.25, .75]; the marginal is [.5, .5].
    posteriors = np.array([[0.9, 0.3], [0.3, 0.9]])
    expected = math.exp(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    assert inception_score(posteriors) == pytest.approx(expected)
    assert inception_score(np.array([[0.2, 0.6], [0.1, 0.3]])) == pytest.approx(1.0)  # same shape: no diversity
    assert inception_score(np.eye(3)) == pytest.approx(3.0, rel=1e-4)  # confident and diverse: the class count


def test_clap_score_is_the_mean_cosine_of_pairs():
    text = np.array([[3.0, 0.0], [0.0, 2.0]])
    assert clap_score(text, text) == pytest.approx(1.0)
    assert clap_score(np.array([[1.0, 1.0], [0.0, -1.0]]), text) == pytest.approx((math.sqrt(0.5) - 1) / 2)


# --- models ---------------------------------------------------------------------------------------------


def test_the_label_classifier_learns_the_corpus_labels(classifier, corpus, clap):
    settings = json.loads((classifier / "classifier.json").read_text())
    assert settings["vocabulary"] == ["high", "low", "tone"]
    assert settings["train"]["loss_last"] < 0.5 * settings["train"]["loss_first"]
    probe = LabelClassifier.load(classifier)
    clips = reference_clips(corpus, "train")
    posteriors = probe.posteriors(ClapEmbedder(clap, "cpu").embed_audio(clips))  # [12, 3]
    truth = evaluate_models.label_targets(clips, probe.vocabulary)
    assert ((posteriors > 0.5) == (truth > 0.5)).mean() >= 0.9
    again = LabelClassifier.load(classifier).posteriors(np.ones((1, probe.dim)))
    assert np.array_equal(again, probe.posteriors(np.ones((1, probe.dim))))  # a saved model reloads the same


def test_evaluate_values_match_a_direct_computation(generated, corpus, clap, classifier):
    result = evaluate(generated, str(corpus), None, clap_folder=clap, classifier=classifier)
    assert result["schema"] == "t2a.evaluation/1"
    assert result["counts"] == {
        "generated": 4,
        "reference": 4,
        "pairs": 8,
        "generated_paired": 4,
        "generated_with_text": 4,
        "reference_with_text": 4,
    }
    embedder = ClapEmbedder(clap, "cpu")
    clips = generated_clips(generated)
    audio, text = embedder.embed_audio(clips), embedder.embed_text([c.text for c in clips])
    assert result["metrics"]["clap_score"] == pytest.approx(float((audio * text).sum(axis=1).mean()), abs=1e-5)
    reference = embedder.embed_audio(reference_clips(corpus, "test"))
    expected_fd = frechet_distance(*gaussian_stats(audio), *gaussian_stats(reference))
    assert result["metrics"]["fd_clap"] == pytest.approx(expected_fd, rel=1e-4)
    for name in ("kl", "is", "is_reference", "clap_score_reference"):
        assert np.isfinite(result["metrics"][name]), name
    assert result["models"]["classifier"]["labels"] == 3
    assert "| FD (CLAP) ↓ |" in format_table(result)


def test_identical_sets_score_fd_zero_and_the_cache_skips_known_files(tmp_path, clap, monkeypatch):
    folder = tmp_path / "wavs"
    for i, freq in enumerate((150.0, 900.0, 2500.0)):
        write_wav(folder / f"{i}.wav", tone(freq), RATE)
    calls = []
    original = ClapEmbedder.embed_audio
    monkeypatch.setattr(
        ClapEmbedder, "embed_audio", lambda self, clips: calls.append(len(clips)) or original(self, clips)
    )
    first = evaluate(folder, folder, None, clap_folder=clap, cache_dir=tmp_path / "cache")
    assert sum(calls) == 3  # the reference files are the same bytes: cached after the generated side
    assert first["metrics"]["fd_clap"] == pytest.approx(0.0, abs=1e-6)
    assert first["metrics"]["clap_score"] is None and first["metrics"]["kl"] is None  # no texts, no classifier
    second = evaluate(folder, folder, None, clap_folder=clap, cache_dir=tmp_path / "cache")
    assert sum(calls) == 3 and second["metrics"] == first["metrics"]
    assert len(list((tmp_path / "cache").glob("clap-*/*.npy"))) == 3


def test_a_prompts_file_must_match_the_wav_count(tmp_path):
    write_wav(tmp_path / "a.wav", tone(200.0), RATE)
    write_wav(tmp_path / "b.wav", tone(400.0), RATE)
    (tmp_path / "prompts.txt").write_text("# comment\nfirst\n\nsecond\n")
    assert [c.text for c in generated_clips(tmp_path, tmp_path / "prompts.txt")] == ["first", "second"]
    (tmp_path / "prompts.txt").write_text("only one\n")
    with pytest.raises(ValueError, match="1 prompts but .* 2 sound files"):
        generated_clips(tmp_path, tmp_path / "prompts.txt")


# --- command --------------------------------------------------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("evaluate")(evaluate_command)
    app.command("train-classifier")(train_classifier_command)
    return app


def test_the_command_writes_evaluation_json_and_prints_the_table(generated, corpus, clap, classifier, tmp_path):
    out = tmp_path / "eval.json"
    args = [
        "evaluate",
        str(generated),
        "--reference",
        str(corpus),
        "--clap",
        str(clap),
        "--classifier",
        str(classifier),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert saved["schema"] == "t2a.evaluation/1" and saved["counts"]["pairs"] == 8
    assert "FD (CLAP)" in result.output and "KL" in result.output
    # AudioLDM Table 1's rows, as audioldm_eval computes them; random-weight nets without --cnn14/--vggish, and said so.
    for label in ("FD (Cnn14 2048-d, audioldm_eval)", "FAD (VGGish, audioldm_eval)", "KL softmax (Cnn14"):
        assert label in result.output
    assert saved["metrics"]["audioldm_fd"] is not None and saved["metrics"]["audioldm_fad"] is not None
    assert saved["audioldm_eval"]["random_weights"] == ["cnn14", "vggish"] and "random-weight" in result.output
    assert saved["counts"]["audioldm_kl_pairs"] == 0 and "file names differ" in result.output


def test_the_train_classifier_command_writes_a_loadable_classifier(corpus, clap, tmp_path):
    args = [
        "train-classifier",
        str(corpus),
        "--clap",
        str(clap),
        "--out",
        str(tmp_path / "labels"),
        "--epochs",
        "5",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    probe = LabelClassifier.load(tmp_path / "labels")
    assert probe.vocabulary == ["high", "low", "tone"] and probe.dim == 32
    assert json.loads((tmp_path / "labels" / "classifier.json").read_text())["train"]["epochs"] == 5


def test_the_command_reports_a_missing_model_in_one_line(generated, corpus, tmp_path):
    args = ["evaluate", str(generated), "--reference", str(corpus), "--clap", str(tmp_path / "nope"), "--device", "cpu"]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 2
    assert "model folder not found" in result.output and "Traceback" not in result.output


# --- PANNs ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn14(tmp_path_factory) -> Path:
    """A random Cnn14 in the PANNs checkpoint layout ({"model": state dict}); fp16 halves the 330 MB file."""
    import torch

    from training.evaluate.panns import new_cnn14

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("panns") / "cnn14.pth"
    torch.save(
        {"model": {k: v.half() if v.is_floating_point() else v for k, v in new_cnn14().state_dict().items()}}, path
    )
    return path


def test_panns_fd_is_zero_for_identical_sets_and_named_by_the_model(tmp_path, clap, cnn14):
    folder = tmp_path / "wavs"
    for i, freq in enumerate((150.0, 900.0, 2500.0)):
        write_wav(folder / f"{i}.wav", tone(freq), RATE)
    result = evaluate(folder, folder, None, clap_folder=clap, panns=cnn14, cache_dir=tmp_path / "cache")
    assert result["metrics"]["fd_panns"] == pytest.approx(0.0, abs=1e-6)
    assert len(result["models"]["panns"]["sha256"]) == 64
    embeddings = np.stack([np.load(p) for p in sorted((tmp_path / "cache").glob("panns-*/*.npy"))])
    assert embeddings.shape == (3, 2048) and not np.allclose(embeddings[0], embeddings[1])


def test_panns_refuses_a_checkpoint_of_another_model(tmp_path):
    import torch

    from pipelines.annotate.encoders import ModelLoadError
    from training.evaluate.panns import PannsEmbedder

    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(ModelLoadError, match="not a Cnn14 checkpoint"):
        PannsEmbedder(tmp_path / "other.pth", "cpu")


def test_prompt_ranking_on_constructed_embeddings():
    from training.evaluate.metrics import prompt_ranking

    prompts = np.eye(3)  # three orthogonal prompt embeddings
    audio = np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.2], [0.9, 0.0, 0.1], [0.0, 0.0, 1.0]])
    ranking = prompt_ranking(audio, np.array([0, 1, 2, 2]), prompts)
    assert ranking["top1"] == 0.75 and ranking["top1_chance"] == pytest.approx(1 / 3)
    unit = audio / np.linalg.norm(audio, axis=1, keepdims=True)
    own = unit[[0, 1, 2, 3], [0, 1, 2, 2]]
    others = (unit.sum(axis=1) - own) / 2
    assert ranking["margin"] == pytest.approx(float((own - others).mean()))
    # ranks: clip 0 → 1; clip 1 → 1; clip 2 (own 2, cosine 0.1 < 0.9 to prompt 0) → 2; clip 3 → 1
    assert ranking["rank"] == pytest.approx(5 / 4) and ranking["rank_chance"] == 2.0
    with pytest.raises(ValueError):
        prompt_ranking(audio, np.array([0, 0, 0, 0]), prompts[:1])


def test_per_prompt_ranking_splits_the_figures_by_prompt():
    from training.evaluate.metrics import per_prompt_ranking

    prompts = np.eye(3)
    audio = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    rows = per_prompt_ranking(audio, np.array([0, 2, 2]), prompts)
    assert [row["prompt"] for row in rows] == [0, 2]  # prompt 1 has no clips
    assert rows[0] == {"prompt": 0, "clips": 1, "own": 1.0, "others": 0.0, "rank": 1.0}
    assert rows[1]["clips"] == 2 and rows[1]["own"] == pytest.approx(0.5) and rows[1]["rank"] == pytest.approx(1.5)
    assert rows[1]["others"] == pytest.approx(0.25)  # clip 2 scores 1 with prompt 0: (0 + 0.5) / 2 over both clips


def test_verdict_states_the_figures():
    from training.evaluate.run import verdict

    above = {
        "metrics": {
            "prompt_top1": 0.9,
            "prompt_top1_chance": 0.25,
            "prompt_margin": 0.1,
            "fd_clap": 1.0,
            "fd_clap_baseline": 2.0,
        }
    }
    lines = verdict(above)
    assert "90%" in lines[0] and "Above chance" in lines[0] and "guidance brings" in lines[1]
    chance = {
        "metrics": {
            "prompt_top1": 0.25,
            "prompt_top1_chance": 0.25,
            "prompt_margin": -0.01,
            "fd_clap": 2.0,
            "fd_clap_baseline": 1.0,
        }
    }
    lines = verdict(chance)
    assert "Not above chance" in lines[0] and "does not help" in lines[1]
    ranked = {
        "metrics": {
            "prompt_top1": 0.5,
            "prompt_top1_chance": 0.1,
            "prompt_margin": 0.05,
            "prompt_rank": 5.0,
            "prompt_rank_chance": 5.5,
            "prompt_rank_p": 0.3,
            "prompt_top1_reference": 0.8,
            "prompt_rank_reference": 1.2,
        }
    }
    lines = verdict(ranked)
    assert (
        "ranks 5.0 of 10" in lines[0] and "p = 0.3" in lines[0] and "Not above chance" in lines[0]
    )  # top-1 alone is not enough
    assert "calibration" in lines[1] and "80%" in lines[1]
    ranked["metrics"]["prompt_rank_p"] = 0.001
    assert "Above chance" in verdict(ranked)[0]


def test_rank_p_value_is_exact_on_small_cases_and_normal_on_large_ones():
    from itertools import product

    from training.evaluate.metrics import rank_p_value

    # 3 clips, 4 prompts: count the 64 equally likely rank triples whose sum is at most s
    for s in range(3, 13):
        exact = sum(sum(r) <= s for r in product(range(1, 5), repeat=3)) / 64
        assert rank_p_value(s, 3, 4) == pytest.approx(exact)
    assert rank_p_value(3, 3, 4) == pytest.approx(1 / 64) and rank_p_value(12, 3, 4) == pytest.approx(1.0)
    # beyond the exact range: the normal approximation, centred on the chance rank sum
    assert rank_p_value(5000 * 501 // 2, 5000, 500) == pytest.approx(0.5, abs=0.01)
    assert (
        1e-3
        < rank_p_value(int(5000 * 501 / 2 * 0.98), 5000, 500)
        < 0.01
        < 0.5
        < rank_p_value(int(5000 * 501 / 2 * 1.02), 5000, 500)
    )  # z = ∓2.45


def test_heldout_prompts_are_the_split_texts_never_the_pseudo_prompts(tmp_path):
    from shard_samples import make_sample

    from training.evaluate.data import heldout_prompts

    human = lambda text: [{"text": text, "origin": "audiocaps", "kind": "human"}]  # noqa: E731
    samples = [
        make_sample("a", 0, captions=human("A bell  tolls"), selected_caption="pseudo one", label_text="Bell"),
        make_sample("b", 1, captions=[], label_text="Rain and water", selected_caption="pseudo two"),
        make_sample("c", 2, captions=human("a bell tolls")),  # the same text, another case: once
        make_sample("d", 3, captions=[], label_text=None),  # nothing of its own: no prompt
        make_sample("e", 4, captions=human("Birds chirp")),
    ]
    writer.write_shard(tmp_path / "test" / "shard-000000.tar", samples)
    assert heldout_prompts(tmp_path, "test") == ["A bell tolls", "Rain and water", "Birds chirp"]
    assert heldout_prompts(tmp_path, "test", limit=2) == ["A bell tolls", "Rain and water"]
    with pytest.raises(FileNotFoundError, match="split 'valid'"):
        heldout_prompts(tmp_path, "valid")
    # CLIPSonic §3: "a photo of [label]" per label (make_sample's clips are Dog + bark), each once
    assert heldout_prompts(tmp_path, "test", form="photo") == ["a photo of dog", "a photo of bark"]
    assert heldout_prompts(tmp_path, "test", form="sound", limit=1) == ["the sound of dog"]
    with pytest.raises(ValueError, match="unknown prompt form 'video'"):
        heldout_prompts(tmp_path, "test", form="video")


def test_evaluate_takes_generated_as_an_option_and_checks_the_prompts_file(generated, corpus, clap, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# held-out\n" + "".join(f"{text}\n" for text in sorted(CAPTIONS.values())))
    args = [
        "evaluate",
        "--generated",
        str(generated),
        "--reference",
        str(corpus),
        "--prompts",
        str(prompts),
        "--clap",
        str(clap),
        "--out",
        str(tmp_path / "e.json"),
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["counts"]["generated"] == 4 and {row["prompt"] for row in saved["prompts"]} == set(CAPTIONS.values())
    assert saved["metrics"]["prompt_rank_chance"] == 1.5 and "per prompt" in result.output
    prompts.write_text("a low hum\na dog barks\n")
    wrong = CliRunner().invoke(_app(), args)
    assert wrong.exit_code == 2 and "does not hold the prompts" in wrong.output and "a dog barks" in wrong.output
    neither = CliRunner().invoke(_app(), ["evaluate", "--reference", str(corpus), "--clap", str(clap)])
    assert neither.exit_code == 2 and "GENERATED or --generated" in neither.output
