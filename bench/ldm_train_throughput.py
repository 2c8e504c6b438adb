"""`t2a train ldm` end to end on pre-encoded latent shards: samples/s and data-wait from the trainer's own log.

    python bench/ldm_train_throughput.py --device cuda --batch 128 --steps 40 --workers 4
    python bench/ldm_train_throughput.py --size tiny --batch 4 --steps 4    # CPU: the same path, small

bench/ldm_throughput.py times the UNet step alone on latents already on the device; this runs the
trainer itself (training/tasks/ldm.py: the streaming loader with its DataLoader workers, posterior
sampling, CFG dropout, autocast, clipping, AdamW, EMA) at AudioLDM-S size, so the gap between the two
is what the loop costs, and `data_wait` (time waiting for the next batch ÷ step time, logged every
`log_every` steps) says whether the loader keeps up (target: < 2 %).

The corpus is tests/support/train_corpus.py's (smooth mels, tone FLACs, CLAP vectors), 10.24-s mels
(1 024 frames of the audioldm profile); a small VAE with AudioLDM's latent layout (C = 8, r = 4)
trained one step and `t2a encode-latents` make the latent shards (8 × 256 × 16 posteriors in float16,
as for a real run). Reported: the last `log_every` window (warm-up, compilation and the first
DataLoader fetches fall in the first). Results: JSON on stdout and in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests" / "support")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _measure import machine  # noqa: E402
from train_corpus import build_train_corpus  # noqa: E402

from demo.models import build_clap  # noqa: E402
from training.config import load_config  # noqa: E402
from training.loop import read_metrics  # noqa: E402

SIZES = {  # UNet widths (AudioLDM App. B for AudioLDM-S; bench/ldm_throughput.py), mel frames
    "audioldm-s": ({"block_out_channels": [128, 256, 384, 640], "layers_per_block": 2, "attention_head_dim": 8}, 1024),
    "tiny": ({"block_out_channels": [32, 64], "layers_per_block": 1, "attention_head_dim": 8}, 64),
}


def write_config(root: Path, shards: Path, clap: Path, args) -> Path:
    unet, frames = SIZES[args.size]
    speed = {
        "compile": args.compile,
        "channels_last": args.channels_last,
        "fused_adamw": args.fused_adamw,
        "attention": args.attention,
    }
    config = {
        "run": str(root / "run"),
        "seed": 0,
        "device": args.device,
        "data": {
            "shards": str(shards),
            "profile": "audioldm",
            "crop_frames": frames,
            "batch_size": args.batch,
            "workers": args.workers,
            "shuffle_buffer": min(256, args.samples),
        },
        "vae": {  # AudioLDM's latent layout (App. C: C = 8, r = 4) in a small, fast VAE
            "block_out_channels": [8, 16, 16],
            "layers_per_block": 1,
            "latent_channels": 8,
            "norm_num_groups": 4,
            "train": {"steps": 1, "ema_decay": 0.0, "checkpoint_every": 1, "log_every": 1},
        },
        "ldm": {
            "conditioning": "clap-audio",
            "encoders": {"clap": str(clap)},
            "unet": unet,
            "train": {
                "steps": args.steps,
                "log_every": args.log_every,
                "checkpoint_every": args.steps,
                "ema_decay": 0.999,
                **speed,
            },
        },
        "sample": {"prompts": []},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(args) -> dict:
    from training.tasks import encode_latents, ldm, vae

    root = Path(tempfile.mkdtemp(prefix="t2a-ldm-train-"))
    _, frames = SIZES[args.size]
    started = time.perf_counter()
    per_shard = max(1, args.samples // 8)
    shards = build_train_corpus(root / "shards", splits={"train": (8, per_shard), "valid": (1, 8)}, frames=frames)
    config = load_config(write_config(root, shards, build_clap(root / "clap"), args))
    vae.train(config)
    encode_latents.encode(config)
    prepared = time.perf_counter() - started
    started = time.perf_counter()
    ldm.train(config)
    seconds = time.perf_counter() - started
    logs = [m for m in read_metrics(config.ldm_dir) if "samples_per_s" in m]
    return {
        "device": args.device,
        "machine": machine(),
        "settings": {
            k: getattr(args, k)
            for k in (
                "size",
                "batch",
                "steps",
                "workers",
                "log_every",
                "compile",
                "channels_last",
                "fused_adamw",
                "attention",
            )
        },
        "train_samples": 8 * per_shard,
        "latent": [8, frames // 4, 16],
        "prepare_s": round(prepared, 1),
        "train_ldm_s": round(seconds, 1),
        "windows": [{k: m[k] for k in ("step", "samples_per_s", "step_s", "data_wait", "loss")} for m in logs],
        "steady": {k: logs[-1][k] for k in ("samples_per_s", "step_s", "data_wait")} if logs else None,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="audioldm-s", choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4, help="DataLoader worker processes")
    parser.add_argument("--samples", type=int, default=512, help="training samples in the latent corpus (8 shards)")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--fused-adamw", action="store_true")
    parser.add_argument("--attention", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--out", type=Path, help="the JSON file (default bench/out/ldm_train_throughput_<device>.json)")
    args = parser.parse_args(argv)
    result = run(args)
    out = args.out or ROOT / "bench" / "out" / f"ldm_train_throughput_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
