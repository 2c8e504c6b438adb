"""CLAP contrastive-training throughput (`t2a train clap`): samples/s on a generated corpus, with the
CLAP log-mel features computed in the loader's example ("loader") or in train_step ("step").

The corpus is tests/support/train_corpus.py's (0.5-s two-tone FLACs, repeat-padded to the window);
the model is the tiny demo CLAP (training.models.clap.tiny_clap_config) unless --init names a
ClapModel folder. Rates come from the trainer's logged step times (data wait + compute) after the
first step (warm-up): batch · steps / Σ step time, and batch / median step time (robust to load from
other processes). They include decoding, windowing, features, tokenisation, forward, backward, AdamW.

    python bench/clap_train_throughput.py                          # CPU, 10-s windows, batch 8
    python bench/clap_train_throughput.py --window 1 --batch 16 --steps 20
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support")]

from _measure import machine  # noqa: E402
from train_corpus import build_train_corpus  # noqa: E402

from training.config import load_config  # noqa: E402
from training.loop import read_metrics  # noqa: E402
from training.tasks import clap as train_clap  # noqa: E402


def measure(root: Path, corpus: Path, features: str, args: argparse.Namespace, n: int) -> dict:
    run = root / f"run-{n}-{features}"
    config = {
        "run": str(run),
        "device": args.device,
        "data": {"shards": str(corpus), "batch_size": args.batch, "workers": args.workers, "shuffle_buffer": 16},
        "clap": {
            "init": args.init,
            "window_seconds": args.window,
            "features": features,
            "train": {"steps": args.steps, "ema_decay": 0.0, "checkpoint_every": args.steps, "log_every": 1},
        },
    }
    path = root / f"{n}-{features}.yaml"
    path.write_text(yaml.safe_dump(config))
    train_clap.train(load_config(path))
    steps = [m for m in read_metrics(run / "clap") if "samples_per_s" in m][1:]
    seconds = sum(m["step_s"] for m in steps)
    median = statistics.median(m["step_s"] for m in steps)  # robust to bursts of load from other processes
    return {
        "features": features,
        "samples_per_s": round(args.batch * len(steps) / seconds, 2),
        "samples_per_s_median_step": round(args.batch / median, 2),
        "data_wait": round(statistics.mean(m["data_wait"] for m in steps), 3),
        "step_s": round(statistics.mean(m["step_s"] for m in steps), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of 48 kHz audio per example")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (the corpus has 4 train shards)")
    parser.add_argument(
        "--features",
        nargs="+",
        choices=["loader", "step"],
        default=["loader", "step", "loader", "step"],
        help="runs in this order (repeated: the first run of a process also warms it up)",
    )
    parser.add_argument("--init", default=None, help="a ClapModel folder (default: the tiny demo CLAP)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        corpus = build_train_corpus(root / "shards", splits={"train": (4, 8), "valid": (1, 4)})
        rows = [measure(root, corpus, features, args, i) for i, features in enumerate(args.features)]
    report = {
        "machine": machine(),
        "device": args.device,
        "window_s": args.window,
        "batch": args.batch,
        "steps": args.steps,
        "workers": args.workers,
        "model": args.init or "tiny demo CLAP",
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "clap_train_throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
