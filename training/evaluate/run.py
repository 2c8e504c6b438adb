"""`t2a evaluate`: generated audio against a reference set — FD, KL, IS and CLAP score.

    result = evaluate(Path("run/samples"), "data/demo/shards", None, clap_folder=Path("models/clap"),
                      classifier=Path("models/labels"), cache_dir=Path("cache/eval"))
    write_evaluation(result, Path("run/samples/evaluation.json")); print(format_table(result))

Metrics (result["metrics"]; None where the inputs do not allow one):
- fd_clap: Fréchet distance between Gaussians fitted to CLAP audio embeddings of the generated and the
  reference clips (AudioLDM's FD, AudioLDM §4.2; FAD is the same distance over VGGish/PANNs
  embeddings, named fd_<model> by the embedder that made them).
- kl: KL(reference posterior || generated posterior) of the label classifier, per pair of clips
  with the same prompt/caption (or key), averaged; per pair the mean of per-label Bernoulli KLs.
- is / is_reference: exp(E_x KL(p(y|x) || p(y))) over the classifier's per-clip normalised posteriors.
- clap_score / clap_score_reference: mean cosine of each clip's CLAP audio embedding and its text
  (Make-An-Audio §5.3); on the reference with its captions it calibrates the scale.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import typer

from training.evaluate.data import Clip, generated_clips, pair_indices, reference_clips
from training.evaluate.embedders import EMBEDDERS, LabelClassifier, embed_cached
from training.evaluate.metrics import (
    clap_score,
    embedding_fd,
    inception_score,
    paired_kl,
    per_prompt_ranking,
    prompt_ranking,
)

SCHEMA = "t2a.evaluation/1"
EVALUATION_JSON = "evaluation.json"
FD_EMBEDDER = "clap"
log = logging.getLogger(__name__)


def evaluate(
    generated_dir: Path,
    reference: str | Path,
    prompts: Path | None,
    *,
    clap_folder: Path,
    classifier: Path | None = None,
    device: str = "cpu",
    cache_dir: Path | None = None,
    split: str = "test",
    panns: Path | None = None,
    baseline: Path | None = None,
    audioldm_eval: bool = False,
    cnn14: Path | None = None,
    vggish: Path | None = None,
) -> dict[str, Any]:
    """Every metric for the clips in `generated_dir` against `reference` (a shard corpus folder and
    `split`, or a folder of sound files); the result is JSON-ready (schema t2a.evaluation/1).
    `panns`: a Cnn14 checkpoint file, adding fd_panns (FAD over PANNs embeddings). `baseline`: the
    same prompts sampled without guidance (`t2a sample --guidance 0`): its FD is the bar to beat.
    `audioldm_eval`: add AudioLDM Table 1's FD, FAD, KL and IS as audioldm_eval computes them
    (training/evaluate/audioldm_eval.py), over the 16-kHz Cnn14 at `cnn14` and VGGish at `vggish`
    (random weights where a path is not given; result["audioldm_eval"] says which)."""
    generated, references = generated_clips(Path(generated_dir), prompts), reference_clips(reference, split)
    if not generated or not references:
        raise ValueError(
            f"nothing to compare: {len(generated)} generated clips in {generated_dir}, {len(references)} reference clips in {reference} ({split})"
        )
    embedder = EMBEDDERS.get(FD_EMBEDDER)(Path(clap_folder), device)
    gen_emb = embed_cached(embedder, generated, cache_dir)  # [N, D]
    ref_emb = embed_cached(embedder, references, cache_dir)  # [M, D]
    metrics: dict[str, float | None] = {f"fd_{embedder.name}": _fd(gen_emb, ref_emb)}
    models: dict[str, Any] = {"clap": embedder.provenance}
    if panns is not None:
        metrics["fd_panns"], models["panns"] = _extra_fd("panns", Path(panns), device, generated, references, cache_dir)
    if baseline is not None:
        metrics[f"fd_{embedder.name}_baseline"] = _fd(
            embed_cached(embedder, generated_clips(Path(baseline), None), cache_dir), ref_emb
        )
    metrics["clap_score"] = _clap_score(embedder, generated, gen_emb)
    following, per_prompt = _prompt_following(embedder, generated, gen_emb, references, ref_emb)
    metrics.update(following)
    metrics["clap_score_reference"] = _clap_score(embedder, references, ref_emb)
    pairs = pair_indices(generated, references)
    if classifier is not None:
        probe = _load_classifier(Path(classifier), embedder.provenance["sha256"], device)
        metrics.update(_classifier_metrics(probe, gen_emb, ref_emb, pairs))
        models["classifier"] = {
            "model": str(classifier),
            "sha256": _sha256(Path(classifier)),
            "labels": len(probe.vocabulary),
        }
    else:
        metrics.update({"kl": None, "is": None, "is_reference": None})
    paper_info = None
    if audioldm_eval:
        from training.evaluate.audioldm_eval import audioldm_eval_metrics

        paper, paper_info = audioldm_eval_metrics(
            generated, references, cnn14=cnn14, vggish=vggish, device=device, cache_dir=cache_dir
        )
        metrics.update(paper)
        models["cnn14"], models["vggish"] = paper_info["cnn14"], paper_info["vggish"]
    counts = {
        "generated": len(generated),
        "reference": len(references),
        "pairs": len(pairs),
        "generated_paired": len({i for i, _ in pairs}),
        "generated_with_text": sum(c.text is not None for c in generated),
        "reference_with_text": sum(c.text is not None for c in references),
    }
    inputs = {
        "generated": str(generated_dir),
        "reference": str(reference),
        "split": split,
        "prompts": str(prompts) if prompts else None,
    }
    if paper_info is not None:
        counts["audioldm_kl_pairs"] = paper_info["kl_pairs"]
    return {
        "schema": SCHEMA,
        "metrics": metrics,
        "counts": counts,
        "models": models,
        "inputs": inputs,
        "prompts": per_prompt,
        **({"audioldm_eval": {"random_weights": paper_info["random_weights"]}} if paper_info else {}),
    }


def _fd(generated: np.ndarray, reference: np.ndarray) -> float | None:
    if len(generated) < 2 or len(reference) < 2:
        log.warning(
            "FD needs at least 2 clips on each side (%d generated, %d reference)", len(generated), len(reference)
        )
        return None
    return embedding_fd(generated, reference)


def _extra_fd(
    name: str, model: Path, device: str, generated: list[Clip], references: list[Clip], cache_dir: Path | None
) -> tuple[float | None, dict]:
    embedder = EMBEDDERS.get(name)(model, device)
    return _fd(
        embed_cached(embedder, generated, cache_dir), embed_cached(embedder, references, cache_dir)
    ), embedder.provenance


def _clap_score(embedder: Any, clips: list[Clip], audio: np.ndarray) -> float | None:
    rows = [i for i, clip in enumerate(clips) if clip.text]
    if not rows:
        return None
    text = embedder.embed_text([clips[i].text for i in rows])
    return clap_score(audio[rows], text)


PROMPT_METRICS = ("top1", "top1_chance", "rank", "rank_chance", "rank_p", "margin")
SIGNIFICANCE = 0.05  # the verdict's bar for "follows its prompts": rank_p below it


def _prompt_following(
    embedder: Any, clips: list[Clip], audio: np.ndarray, references: list[Clip], ref_audio: np.ndarray
) -> tuple[dict[str, float | None], list[dict[str, Any]]]:
    """Each sample's CLAP audio embedding ranked against all the run's prompts (evaluate_metrics.prompt_ranking),
    overall and per prompt; and, for calibration, the reference clips whose own text is one of the prompts
    ranked the same way (`prompt_*_reference`: how well this CLAP can tell the prompts apart on real audio)."""
    texts = sorted({clip.text for clip in clips if clip.text})
    rows = [i for i, clip in enumerate(clips) if clip.text]
    if len(texts) < 2:
        return {f"prompt_{name}": None for name in PROMPT_METRICS}, []
    text_emb = embedder.embed_text(texts)
    own = np.asarray([texts.index(clips[i].text) for i in rows])
    metrics: dict[str, float | None] = {
        f"prompt_{name}": value for name, value in prompt_ranking(audio[rows], own, text_emb).items()
    }
    known = [j for j, clip in enumerate(references) if clip.truth in texts]
    calibration = (
        prompt_ranking(ref_audio[known], np.asarray([texts.index(references[j].truth) for j in known]), text_emb)
        if known
        else {}
    )
    metrics |= {f"prompt_{name}_reference": calibration.get(name) for name in ("top1", "rank")}
    per_prompt = [{**row, "prompt": texts[row["prompt"]]} for row in per_prompt_ranking(audio[rows], own, text_emb)]
    return metrics, per_prompt


def verdict(result: dict[str, Any]) -> list[str]:
    """Plain sentences, with the figures, on whether the samples follow their prompts."""
    m = result["metrics"]
    lines = []
    if m.get("prompt_top1") is not None:
        if (
            m.get("prompt_rank_p") is not None
        ):  # the mean rank, with its p-value: top-1 alone is too noisy on a few samples
            follows = m["prompt_rank_p"] < SIGNIFICANCE and m["prompt_margin"] > 0
        else:
            follows = m["prompt_top1"] > m["prompt_top1_chance"] and m["prompt_margin"] > 0
        line = (
            f"Prompt following: {m['prompt_top1']:.0%} of samples score highest (CLAP) with their own prompt, chance is "
            f"{m['prompt_top1_chance']:.0%}"
        )
        if m.get("prompt_rank") is not None:
            line += (
                f"; their own prompt ranks {m['prompt_rank']:.1f} of {round(2 * m['prompt_rank_chance'] - 1)} on average, "
                f"chance is {m['prompt_rank_chance']:.1f}"
            )
            if m.get("prompt_rank_p") is not None:
                line += f" (p = {m['prompt_rank_p']:.2g} that prompt-blind samples rank this well)"
        line += f"; own-prompt margin {m['prompt_margin']:+.4f}. "
        line += (
            "Above chance: the samples follow their prompts."
            if follows
            else "Not above chance: the samples do not follow their prompts."
        )
        lines.append(line)
        if m.get("prompt_top1_reference") is not None:
            lines.append(
                f"For calibration, the held-out clips these prompts describe: {m['prompt_top1_reference']:.0%} rank their own text "
                f"first, mean rank {m['prompt_rank_reference']:.1f}."
            )
    base = next((k for k in m if k.endswith("_baseline")), None)
    if base and m.get(base) is not None and m.get(base.removesuffix("_baseline")) is not None:
        guided, plain = m[base.removesuffix("_baseline")], m[base]
        lines.append(
            f"FD with guidance {guided:.4f} vs {plain:.4f} without (guidance 0): "
            + ("guidance brings the samples closer to the reference." if guided < plain else "guidance does not help.")
        )
    return lines


def paper_note(result: dict[str, Any]) -> list[str]:
    """What the audioldm_eval rows were computed with: trained weights, or random ones (not the papers' scale)."""
    if "audioldm_eval" not in result:
        return []
    models, random = result["models"], result["audioldm_eval"]["random_weights"]
    line = (
        f"audioldm_eval rows (AudioLDM Table 1): Cnn14 weights {models['cnn14']['model']}, VGGish weights "
        f"{models['vggish']['model']}; KL over {result['counts'].get('audioldm_kl_pairs', 0)} file-name pairs"
    )
    if not result["counts"].get("audioldm_kl_pairs"):
        line += " (n/a: the generated and reference file names differ, as audioldm_eval requires them equal)"
    if random:
        line += (
            f". {' and '.join(random)} random-weight: the formulas are the papers', the values are not on their "
            "scale (give --cnn14 Cnn14_16k_mAP=0.438.pth, --vggish vggish-10086976.pth)"
        )
    return [line + "."]


def _load_classifier(folder: Path, clap_sha256: str, device: str) -> LabelClassifier:
    probe = LabelClassifier.load(folder, device)
    if probe.clap_sha256 and probe.clap_sha256 != clap_sha256:
        raise ValueError(
            f"{folder} was trained on the embeddings of another CLAP (sha256 {probe.clap_sha256[:12]}…, "
            f"this one is {clap_sha256[:12]}…); pass the CLAP it was trained with, or retrain it"
        )
    return probe


def _classifier_metrics(
    probe: LabelClassifier, gen_emb: np.ndarray, ref_emb: np.ndarray, pairs: list[tuple[int, int]]
) -> dict[str, float | None]:
    gen_post, ref_post = probe.posteriors(gen_emb), probe.posteriors(ref_emb)  # [N, C], [M, C]
    kl = None
    if pairs:
        g, r = (np.asarray(side) for side in zip(*pairs))
        kl = paired_kl(ref_post[r], gen_post[g])
    return {
        "kl": kl,
        "is": inception_score(gen_post) if len(gen_post) else None,
        "is_reference": inception_score(ref_post) if len(ref_post) else None,
    }


def _sha256(path: Path) -> str:
    from pipelines.core.io import content_sha256

    return content_sha256(path)


# --- output -----------------------------------------------------------------------------------------

LABELS = {
    "fd_clap": "FD (CLAP) ↓",
    "fd_panns": "FD (PANNs) ↓",
    "kl": "KL (CLAP probe, Bernoulli) ↓",
    "is": "IS (CLAP probe) ↑",
    "is_reference": "IS (CLAP probe), reference",
    "audioldm_fd": "FD (Cnn14 2048-d, audioldm_eval) ↓",
    "audioldm_fad": "FAD (VGGish, audioldm_eval) ↓",
    "audioldm_kl_softmax": "KL softmax (Cnn14, audioldm_eval) ↓",
    "audioldm_kl_sigmoid": "KL sigmoid (Cnn14, audioldm_eval) ↓",
    "audioldm_is": "IS (Cnn14, 10 splits, audioldm_eval) ↑",
    "audioldm_is_std": "  IS std over splits",
    "clap_score": "CLAP score ↑",
    "clap_score_reference": "CLAP score, reference",
    "fd_clap_baseline": "FD (CLAP), guidance 0",
    "prompt_top1": "own prompt ranks first ↑",
    "prompt_top1_chance": "  chance",
    "prompt_margin": "own-prompt margin ↑",
    "prompt_rank": "own prompt's mean rank ↓",
    "prompt_rank_chance": "  chance",
    "prompt_rank_p": "  p (prompt-blind samples)",
    "prompt_top1_reference": "own text ranks first, reference",
    "prompt_rank_reference": "own text's mean rank, reference",
}


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) per metric, then per count: what the table writers print."""
    out = [
        (LABELS.get(name, name), "n/a" if value is None else f"{value:.2g}" if name.endswith("_p") else f"{value:.4f}")
        for name, value in result["metrics"].items()
    ]
    return out + [(f"clips: {name.replace('_', ' ')}", str(value)) for name, value in result["counts"].items()]


def format_table(result: dict[str, Any]) -> str:
    """A markdown table of the metrics and counts."""
    lines = ["| metric | value |", "|---|---:|"]
    return "\n".join(lines + [f"| {label} | {value} |" for label, value in rows(result)]) + "\n"


def write_evaluation(result: dict[str, Any], path: Path) -> Path:
    from training.sample.io import write_json

    write_json(Path(path), result)
    return Path(path)


# --- command ----------------------------------------------------------------------------------------


def evaluate_command(
    generated_arg: Path | None = typer.Argument(
        None, metavar="GENERATED", help="A `t2a sample` output folder, or a folder of WAVs (with --prompts)."
    ),
    generated_opt: Path | None = typer.Option(None, "--generated", help="GENERATED, given as an option."),
    reference: str = typer.Option(
        ..., "--reference", "-r", help="A shard corpus folder (with --split) or a folder of reference WAVs."
    ),
    prompts: Path | None = typer.Option(
        None,
        "--prompts",
        help="One prompt per line: for WAVs, in file-name order; for a `t2a sample` folder, the prompts it must hold.",
    ),
    clap: Path = typer.Option(
        ..., "--clap", help="A transformers ClapModel folder (embeddings for FD and the CLAP score)."
    ),
    classifier: Path | None = typer.Option(
        None, "--classifier", help="A label classifier folder (KL and IS); without it they are n/a."
    ),
    split: str = typer.Option("test", "--split", help="The corpus split to compare against."),
    out: Path | None = typer.Option(None, "--out", help=f"Result JSON (default: <generated>/{EVALUATION_JSON})."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Keep embeddings here (one .npy per file sha256) for the next run."
    ),
    panns: Path | None = typer.Option(None, "--panns", help="A PANNs Cnn14 checkpoint (.pth): adds fd_panns."),
    baseline: Path | None = typer.Option(
        None, "--baseline", help="The same prompts sampled with --guidance 0: FD to beat."
    ),
    paper: bool = typer.Option(
        True,
        "--audioldm-eval/--no-audioldm-eval",
        help="AudioLDM Table 1's FD, FAD, KL and IS as audioldm_eval computes them (16-kHz Cnn14, VGGish).",
    ),
    cnn14: Path | None = typer.Option(
        None, "--cnn14", help="A 16-kHz PANNs Cnn14 checkpoint (Cnn14_16k_mAP=0.438.pth); without it: random weights."
    ),
    vggish: Path | None = typer.Option(
        None, "--vggish", help="A torchvggish VGGish state dict (vggish-10086976.pth); without it: random weights."
    ),
) -> None:
    """Score generated audio against a reference set: FD, KL, IS and CLAP score."""
    from rich.console import Console
    from rich.table import Table

    from pipelines.core.console import fail as _fail
    from training.config import resolve_device as _device

    if generated_arg is not None and generated_opt is not None and generated_arg != generated_opt:
        _fail(f"two generated folders: {generated_arg} and --generated {generated_opt}; give one")
    generated = generated_arg or generated_opt
    if generated is None:
        _fail("give the generated audio folder (GENERATED or --generated)")
    result = _guard(
        lambda: evaluate(
            generated,
            reference,
            prompts,
            clap_folder=clap,
            classifier=classifier,
            device=_device(device),
            cache_dir=cache_dir,
            split=split,
            panns=panns,
            baseline=baseline,
            audioldm_eval=paper,
            cnn14=cnn14,
            vggish=vggish,
        )
    )
    target = write_evaluation(result, out or Path(generated) / EVALUATION_JSON)
    table = Table("metric", "value", title=f"evaluation of {generated}")
    for label, value in rows(result):
        table.add_row(label, value)
    Console().print(table)
    if result.get("prompts"):
        table = Table("prompt", "samples", "CLAP: own", "CLAP: others", "rank", title="per prompt")
        for row in result["prompts"]:
            table.add_row(
                row["prompt"], str(row["clips"]), f"{row['own']:.3f}", f"{row['others']:.3f}", f"{row['rank']:.1f}"
            )
        Console().print(table)
    for line in verdict(result) + paper_note(result):
        Console().print(line, highlight=False)
    Console(stderr=True, soft_wrap=True).print(f"written: {target}")


def train_classifier_command(
    shards: Path = typer.Argument(
        ..., help="A shard corpus folder; its train split's labels (json labels names) are the vocabulary."
    ),
    clap: Path = typer.Option(
        ..., "--clap", help="The ClapModel folder `t2a evaluate --clap` will use (the probe reads its embeddings)."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for model.safetensors + classifier.json."),
    epochs: int = typer.Option(200, min=1, help="Full-batch Adam steps."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Keep CLAP embeddings here (shared with t2a evaluate)."
    ),
) -> None:
    """Train the multi-label classifier whose posteriors give `t2a evaluate` its KL and IS."""
    from rich.console import Console

    from training.config import resolve_device as _device
    from training.evaluate.embedders import train_label_classifier

    folder = _guard(
        lambda: train_label_classifier(shards, clap, out, epochs, seed, device=_device(device), cache_dir=cache_dir)
    )
    Console(stderr=True, soft_wrap=True).print(f"label classifier: {folder}")


def _guard(action):
    """Problems a user can fix (missing folders, a wrong model, a bad prompts file) as one line."""
    from pipelines.annotate.encoders import ModelLoadError
    from pipelines.core.console import fail as _fail
    from pipelines.core.registry import UnknownName

    try:
        return action()
    except (ModelLoadError, UnknownName, FileNotFoundError, ValueError) as error:
        _fail(str(error))
