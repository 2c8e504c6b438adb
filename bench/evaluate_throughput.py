"""`t2a evaluate` throughput: clips/s of evaluate() (generated + reference clips), cold (every clip
embedded) and warm (every embedding from the cache), on synthetic 10-s, 16 kHz WAVs.

The CLAP is randomly initialised from a config and saved to a temporary folder: `--size tiny` is
training.models.clap.tiny_clap_config (~0.4 M parameters), `--size real` transformers'
ClapConfig() audio branch (HTSAT-tiny, as laion/clap-htsat-unfused) with a RoBERTa-base-sized text
branch over the demo tokenizer's small vocabulary; or pass `--clap FOLDER`. A random label
classifier (10 labels) is included, so KL and IS are part of the timing; `--panns` adds a random
Cnn14 (fd_panns). Nothing is downloaded.

    python bench/evaluate_throughput.py --clips 32
    python bench/evaluate_throughput.py --clips 16 --size real
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _measure import machine  # noqa: E402

from training.evaluate.embedders import LabelClassifier  # noqa: E402
from training.evaluate.run import evaluate  # noqa: E402
from training.sample.io import write_json, write_wav  # noqa: E402

RATE = 16000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=32, help="generated clips; as many reference clips")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--clap", type=Path, default=None, help="a ClapModel folder instead of a random one")
    parser.add_argument("--panns", action="store_true", help="also FD over a random PANNs Cnn14's embeddings")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clap = args.clap or build_clap(work / "clap", args.size)
        generated, reference = (
            write_clips(work / "generated", args.clips, args.seconds, 0),
            write_clips(work / "reference", args.clips, args.seconds, 1),
        )
        classifier = LabelClassifier([f"label{i}" for i in range(10)], embedding_dim(clap)).save(work / "labels")
        panns = build_cnn14(work / "cnn14.pth") if args.panns else None
        rates = {}
        for run in ("cold", "warm"):
            started = time.perf_counter()
            result = evaluate(
                generated,
                reference,
                None,
                clap_folder=clap,
                classifier=classifier,
                device=args.device,
                cache_dir=work / "cache",
                panns=panns,
            )
            seconds = time.perf_counter() - started
            rates[run] = {"seconds": round(seconds, 3), "clips_per_s": round(2 * args.clips / seconds, 2)}
    report = {
        "bench": "evaluate_throughput",
        "size": "custom" if args.clap else args.size,
        "clips": 2 * args.clips,
        "seconds_per_clip": args.seconds,
        "panns": args.panns,
        "device": args.device,
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "rates": rates,
        "metrics": result["metrics"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"evaluate_throughput-{report['size']}{'-panns' if args.panns else ''}-{args.device}.json").write_text(
        json.dumps(report, indent=2) + "\n"
    )
    print(json.dumps(report, indent=2))


def build_clap(folder: Path, size: str) -> Path:
    import transformers

    from demo.models import build_clap as build_tiny
    from training.models.clap import roberta_tokenizer, save_tokenizer

    if size == "tiny":
        return build_tiny(folder)
    tokenizer = roberta_tokenizer()
    config = transformers.ClapConfig(
        text_config=dict(vocab_size=len(tokenizer), pad_token_id=1, bos_token_id=0, eos_token_id=2)
    )
    transformers.ClapModel(config).save_pretrained(folder)
    extractor = transformers.ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad")
    transformers.ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    save_tokenizer(tokenizer, folder)
    return folder


def build_cnn14(path: Path) -> Path:
    from training.evaluate.panns import new_cnn14

    torch.save({"model": new_cnn14().state_dict()}, path)
    return path


def embedding_dim(clap: Path) -> int:
    return json.loads((clap / "config.json").read_text())["projection_dim"]


def write_clips(folder: Path, count: int, seconds: float, seed: int) -> Path:
    """`t2a sample`-style folder: noise-modulated tones with prompts (CLAP score and pairs apply)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    items = []
    for i in range(count):
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) + 0.05 * rng.standard_normal(len(t))
        write_wav(folder / f"{i:03d}.wav", wave.astype(np.float32), RATE)
        items.append({"index": i, "prompt": f"sound number {i % 8}", "seed": i, "wav": f"{i:03d}.wav", "png": ""})
    write_json(folder / "samples.json", {"sample_rate": RATE, "items": items})
    return folder


if __name__ == "__main__":
    main()
