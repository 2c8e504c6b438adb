"""training/evaluate/audioldm_eval.py: AudioLDM Table 1's FD, FAD, KL and IS as audioldm_eval computes
them. The formulas are checked against audioldm_eval's own code (metrics/kl.py, isc.py, fid.py, copied
below as the reference) on the same logits/embeddings; the networks are the real Cnn14 (16 kHz) and
VGGish architectures with random weights, checked against a direct forward pass."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from training.evaluate import audioldm_eval as ae  # noqa: E402
from training.evaluate.data import Clip, generated_clips  # noqa: E402
from training.evaluate.metrics import (  # noqa: E402
    audioldm_inception_score,
    audioldm_kl,
    embedding_fd,
    frechet_distance,
    gaussian_stats,
)
from training.sample.io import write_wav  # noqa: E402

# --- audioldm_eval's code, as the reference ------------------------------------------------------------


def reference_kl(features_1: torch.Tensor, features_2: torch.Tensor) -> dict[str, float]:
    """audioldm_eval metrics/kl.py calculate_kl after pairing: input1 = generated, input2 = target."""
    EPS = 1e-6
    kl_softmax = torch.nn.functional.kl_div(
        (features_1.softmax(dim=1) + EPS).log(), features_2.softmax(dim=1), reduction="sum"
    ) / len(features_1)
    kl_sigmoid = torch.nn.functional.kl_div(
        (features_1.sigmoid() + EPS).log(), features_2.sigmoid(), reduction="sum"
    ) / len(features_1)
    return {"sigmoid": float(kl_sigmoid), "softmax": float(kl_softmax)}


def reference_isc(features: torch.Tensor, rng_seed=2020, splits=10) -> dict[str, float]:
    """audioldm_eval metrics/isc.py calculate_isc (samples_shuffle=True)."""
    N, C = features.shape
    rng = np.random.RandomState(rng_seed)
    features = features[rng.permutation(N), :]
    features = features.double()
    p = features.softmax(dim=1)
    log_p = features.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        p_chunk = p[(i * N // splits) : ((i + 1) * N // splits), :]
        log_p_chunk = log_p[(i * N // splits) : ((i + 1) * N // splits), :]
        q_chunk = p_chunk.mean(dim=0, keepdim=True)
        kl = p_chunk * (log_p_chunk - q_chunk.log())
        scores.append(kl.sum(dim=1).mean().exp().item())
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores))}


def reference_fid(features_1: np.ndarray, features_2: np.ndarray) -> float:
    """audioldm_eval metrics/fid.py calculate_fid (scipy sqrtm with the eps retry)."""
    mu1, sigma1 = np.mean(features_1, axis=0), np.cov(features_1, rowvar=False)
    mu2, sigma2 = np.mean(features_2, axis=0), np.cov(features_2, rowvar=False)
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


# --- formulas ---------------------------------------------------------------------------------------------


def test_kl_softmax_and_sigmoid_match_audioldm_eval_on_the_same_logits():
    rng = np.random.default_rng(0)
    generated, reference = rng.normal(0, 3, (20, 527)), rng.normal(0, 3, (20, 527))
    ours = audioldm_kl(generated, reference)
    theirs = reference_kl(torch.tensor(generated, dtype=torch.float64), torch.tensor(reference, dtype=torch.float64))
    assert ours["softmax"] == pytest.approx(theirs["softmax"], rel=1e-9)
    assert ours["sigmoid"] == pytest.approx(theirs["sigmoid"], rel=1e-9)
    # Known values: identical logits give only the eps term; KL(softmax) of one confident class vs uniform = log C − ε·C.
    same = audioldm_kl(generated, generated)
    assert abs(same["softmax"]) < 1e-3 and same["softmax"] < 0  # −Σ p·log(1 + 1e-6/p) ≈ −C·1e-6
    sure = np.full((1, 4), -50.0)
    sure[0, 2] = 50.0
    assert audioldm_kl(np.zeros((1, 4)), sure)["softmax"] == pytest.approx(np.log(4) - np.log(1 + 4e-6), rel=1e-6)


def test_inception_score_matches_audioldm_eval_with_ten_shuffled_splits():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, (37, 527))  # 37: splits of 3 and 4 rows
    ours = audioldm_inception_score(logits)
    theirs = reference_isc(torch.tensor(logits))
    assert ours["mean"] == pytest.approx(theirs["mean"], rel=1e-12) and ours["std"] == pytest.approx(theirs["std"])
    # Known value: each split holds k confident predictions of k different classes → IS = k.
    confident = np.full((40, 10), -60.0)
    confident[np.arange(40), np.arange(40) % 10] = 60.0
    score = audioldm_inception_score(confident, splits=1)
    assert score["mean"] == pytest.approx(10.0, rel=1e-6) and score["std"] == 0
    with pytest.raises(ValueError, match="10 splits"):
        audioldm_inception_score(logits[:9])


def test_file_name_pairing_is_audioldm_evals():
    def clips(names):
        return [Clip(key=name, text=None, sha256=name) for name in names]

    names = [f"{i:03d}" for i in range(200)]
    assert ae.same_name_pairs(clips(names), clips(names[::-1])) == [(i, 199 - i) for i in range(200)]
    assert len(ae.same_name_pairs(clips(names[:199] + ["x"]), clips(names))) == 199  # 99.5 % > 99 %: paired
    assert ae.same_name_pairs(clips(names[:198] + ["x", "y"]), clips(names)) == []  # 99 %: not more than 99 %
    assert ae.same_name_pairs(clips(["a", "b"]), clips(["a", "c"])) == []  # 50 %: not paired, KL not computed


# --- networks -------------------------------------------------------------------------------------------


def tone(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.1).astype(np.float32)  # +0.1: a DC offset that must go


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("wavs")
    for side, shift in (("generated", 0.0), ("reference", 37.0)):
        for i, freq in enumerate((220.0, 1250.0, 3100.0)):
            write_wav(root / side / f"clip{i}.wav", tone(freq + shift, 1.0 + 0.6 * i, 48000), 48000)
    return root / "generated", root / "reference"


@pytest.fixture(scope="module")
def tagger() -> ae.Cnn14Tagger:
    return ae.cnn14_tagger(None)


def test_the_waveform_is_audioldm_evals_mean_removed_16k_padded_to_two_seconds(wavs):
    import soxr

    clip = generated_clips(wavs[0])[0]  # 1 s at 48 kHz
    audio, rate = clip.audio()
    expected = soxr.resample(audio - audio.mean(), rate, 16000, quality="VHQ")
    wave = ae.waveform(clip)
    assert wave.shape == (32000,) and np.all(wave[len(expected) :] == 0)
    np.testing.assert_allclose(wave[: len(expected)], expected, atol=1e-5)  # float64 vs float32 resampling


def test_cnn14_rows_are_the_audioldm_eval_forward_of_the_16k_cnn14(tagger, wavs):
    """Random-weight Cnn14 (laion_clap's copy of the PANNs architecture, 16-kHz front end) against
    audioldm_eval's forward (feature_extractors/panns/models.py Cnn14.forward, eval mode) written out."""
    import torch.nn.functional as F

    clips = generated_clips(wavs[0])
    rows = tagger.embed_audio(clips)
    assert rows.shape == (3, 2048 + 527)
    m = tagger.model
    assert m.spectrogram_extractor.stft.conv_real.weight.shape[-1] == 512 and m.logmel_extractor.melW.shape == (257, 64)
    with torch.no_grad():
        for clip, row in zip(clips, rows):
            x = m.spectrogram_extractor(torch.as_tensor(ae.waveform(clip))[None])
            x = m.logmel_extractor(x).transpose(1, 3)
            x = m.bn0(x).transpose(1, 3)
            for block in range(1, 6):
                x = getattr(m, f"conv_block{block}")(x, pool_size=(2, 2), pool_type="avg")
            x = m.conv_block6(x, pool_size=(1, 1), pool_type="avg")
            x = torch.mean(x, dim=3)
            x = torch.max(x, dim=2)[0] + torch.mean(x, dim=2)
            embedding = F.relu(m.fc1(x))
            logits = m.fc_audioset(embedding)
            np.testing.assert_allclose(row[:2048], embedding[0].numpy(), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(row[2048:], logits[0].numpy(), rtol=1e-4, atol=1e-5)


def test_a_cnn14_checkpoint_loads_from_a_local_path_and_a_wrong_one_is_refused(tagger, tmp_path):
    from pipelines.annotate.encoders import ModelLoadError

    path = tmp_path / "Cnn14_16k.pth"
    state = {k: v.clone() for k, v in tagger.model.state_dict().items()}
    state["fc_audioset.bias"] += 1.0
    torch.save({"model": state}, path)
    loaded = ae.Cnn14Tagger(path)
    assert loaded.provenance["model"] == str(path) and len(loaded.provenance["sha256"]) == 64
    assert torch.equal(loaded.model.fc_audioset.bias, state["fc_audioset.bias"])
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(ModelLoadError, match="not a 16-kHz PANNs Cnn14 .* checkpoint: 71 weights missing"):
        ae.Cnn14Tagger(tmp_path / "other.pth")


def test_vggish_gives_one_128_d_row_per_096_s_example_without_the_last_relu(wavs, tmp_path):
    from torchvggish.vggish_input import waveform_to_examples

    vgg = ae.vggish_embedder(None)
    clips = generated_clips(wavs[0])
    rows = vgg.examples(clips)
    counts = [len(waveform_to_examples(ae.waveform(c).astype(np.float64), 16000, return_tensor=False)) for c in clips]
    assert counts == [2, 2, 2] and rows.shape == (6, 128)  # ≥ 2 s each after padding: two 0.96-s examples
    assert (rows < 0).any()  # frechet_audio_distance drops the last ReLU (use_activation=False)
    assert not isinstance(list(vgg.model.embeddings.children())[-1], torch.nn.ReLU)
    path = tmp_path / "vggish.pth"
    torch.save(vgg.model.state_dict(), path)
    np.testing.assert_allclose(ae.VggishEmbedder(path).examples(clips), rows, rtol=1e-5, atol=1e-6)


def test_audioldm_eval_metrics_on_files_match_the_formulas_on_their_rows(tagger, wavs, tmp_path):
    generated, reference = (generated_clips(folder) for folder in wavs)
    metrics, info = ae.audioldm_eval_metrics(generated, reference, cache_dir=tmp_path / "cache")
    gen, ref = tagger.embed_audio(generated), tagger.embed_audio(reference)
    assert info["kl_pairs"] == 3 and info["random_weights"] == ["cnn14", "vggish"]
    # The sample-space FD (3 + 3 clips, 2048-d) equals audioldm_eval's form: test_fd_from_samples_… below.
    assert metrics["audioldm_fd"] == pytest.approx(embedding_fd(gen[:, :2048], ref[:, :2048]), rel=1e-9, abs=1e-12)
    theirs = reference_kl(torch.tensor(gen[:, 2048:]).double(), torch.tensor(ref[:, 2048:]).double())
    assert metrics["audioldm_kl_softmax"] == pytest.approx(theirs["softmax"], rel=1e-6, abs=1e-12)
    assert metrics["audioldm_kl_sigmoid"] == pytest.approx(theirs["sigmoid"], rel=1e-6, abs=1e-12)
    assert metrics["audioldm_is"] is None  # 3 files: fewer than the 10 splits
    vgg = ae.vggish_embedder(None)
    assert metrics["audioldm_fad"] == pytest.approx(
        reference_fid(vgg.examples(generated), vgg.examples(reference)), rel=1e-4, abs=1e-9
    )


def test_fd_from_samples_equals_audioldm_evals_sqrtm_form_when_there_are_fewer_samples_than_dimensions():
    rng = np.random.default_rng(3)
    for n, m, d in ((3, 3, 64), (7, 12, 40), (30, 25, 20)):  # the last: more samples than dimensions
        x, y = rng.normal(0, 1, (n, d)) ** 2, rng.normal(0.3, 1.5, (m, d))
        assert embedding_fd(x, y) == pytest.approx(reference_fid(x, y), rel=1e-6)
        assert embedding_fd(x, y) == pytest.approx(frechet_distance(*gaussian_stats(x), *gaussian_stats(y)), rel=1e-7)
