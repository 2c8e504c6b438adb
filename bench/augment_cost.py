"""What the paper-faithful audio augmentations cost a `t2a train ldm` step on pre-encoded latents (issue 17 §2, §4).

    python bench/augment_cost.py --size tiny                 # the demo's sizes (training/configs/demo.yaml)
    python bench/augment_cost.py --size audioldm-s --batch 2 --steps 4

Each setting runs the trainer itself (training/tasks/ldm.py) on the same latent corpus with clap-audio
conditioning (AudioLDM §3.2), `ldm.latents: true`, DataLoader workers 0 (everything in this process):

    off                  no augmentation
    mixup-latent 0.5     `data.augment.mixup.domain: latent`: latents and CLAP vectors mixed in the batch
    mixup-waveform 0.5   AudioLDM §3.3 eq. 8 as the paper: a second clip's audio read from its shard and
                         decoded, waveforms mixed, mel computed, then in the step the VAE encoder on the new
                         mel and the CLAP audio tower on the new waveform (the audioldm presets' setting)
    reprogram 1.0        Make-An-Audio §3.2.2 on every sample (the upper bound): N ~ U{0,1,2} events from D
                         decoded and joined, mel, VAE encoder and CLAP as above

Per step: the wall and CPU time (time.process_time: every thread of this process) between the ends of
consecutive training steps, which includes fetching the next batch (loader work runs in this process),
averaged after `--warmup` steps. The machine is shared with other jobs: CPU seconds are the steadier
figure. Corpus: tests/support/train_corpus.py's (two-tone FLACs, here `--seconds` long; every clip
labelled, half of them single-event, so D is half the corpus), `--samples` training clips in 4 shards.
Sizes: `tiny` is the demo's (VAE [16, 32, 32] C 8, UNet [32, 64], 128-frame crops, the demo's tiny CLAP);
`audioldm-s` is AudioLDM-S (VAE [128, 256, 512] C 8, UNet [128, 256, 384, 640], 1024-frame crops: 10.24 s)
with a randomly initialised CLAP of the real HTSAT-tiny audio architecture (transformers' ClapAudioConfig
defaults: its cost is the real one). `cpu_s_per_augmented_sample` splits one augmented sample's cost into the
loader's parts (AudioAugment: read, decode, compose or mix, mel; the CLAP input features of the new
waveform) and the step's (the VAE encoder, the CLAP audio tower), each measured alone. Results: JSON on stdout and in --out.
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

import train_corpus  # noqa: E402
from _measure import machine  # noqa: E402

from training.config import load_config  # noqa: E402

SIZES = {
    "tiny": {
        "vae": {"block_out_channels": [16, 32, 32], "norm_num_groups": 8, "layers_per_block": 1},
        "unet": {"block_out_channels": [32, 64], "layers_per_block": 1, "attention_head_dim": 8, "norm_num_groups": 16},
        "frames": 128,
    },
    "audioldm-s": {
        "vae": {"block_out_channels": [128, 256, 512], "norm_num_groups": 32, "layers_per_block": 2},
        "unet": {"block_out_channels": [128, 256, 384, 640], "layers_per_block": 2, "head_channels": 32},
        "frames": 1024,
    },
}
SETTINGS = {
    "off": {},
    "mixup-latent 0.5": {"mixup": {"probability": 0.5, "alpha": 5.0, "domain": "latent"}},
    "mixup-waveform 0.5": {"mixup": {"probability": 0.5, "alpha": 5.0, "domain": "waveform"}},
    "reprogram 1.0": {"reprogram": {"probability": 1.0, "counts": [0, 1, 2]}},
}
STORED_FRAMES = 1024  # the corpus mels: 10.24 s of the audioldm profile


def build_clap(folder: Path, size: str) -> Path:
    """The demo's tiny CLAP, or (audioldm-s) one with the real HTSAT-tiny audio tower and a small text tower."""
    from demo import models

    if size == "tiny":
        return models.build_clap(folder)
    import torch
    import transformers

    tokenizer = models.roberta_tokenizer()
    tiny = models.tiny_clap_config(len(tokenizer))
    config = transformers.ClapConfig(text_config=tiny.text_config.to_dict(), projection_dim=tiny.projection_dim)
    torch.manual_seed(0)
    transformers.ClapModel(config).save_pretrained(folder)
    extractor = transformers.ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad")
    transformers.ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    models.save_tokenizer(tokenizer, folder)
    return folder


def corpus(root: Path, samples: int, seconds: float) -> Path:
    original = train_corpus.tone_flac
    train_corpus.tone_flac = lambda rng: original(rng, seconds=seconds)
    try:  # clip_frames: every clip labelled (event_count 1 or 2), so that D is not empty
        return train_corpus.build_train_corpus(
            root, splits={"train": (4, max(1, samples // 4)), "valid": (1, 2)}, frames=STORED_FRAMES, clip_frames=1
        )
    finally:
        train_corpus.tone_flac = original


def config_file(root: Path, shards: Path, clap: Path, args, augment: dict, name: str) -> Path:
    size = SIZES[args.size]
    loop = {"steps": args.warmup + args.steps, "log_every": 1000, "checkpoint_every": 1000, "ema_decay": 0.0}
    config = {
        "run": str(root / "run"),  # one run folder: the VAE, latents and the clip index are shared
        "seed": 0,
        "device": args.device,
        "data": {
            "shards": str(shards),
            "profile": "audioldm",
            "crop_frames": size["frames"],
            "batch_size": args.batch,
            "workers": 0,
            "shuffle_buffer": 8,
            "augment": augment,
        },
        "vae": {**size["vae"], "latent_channels": 8, "train": {"steps": 1, "ema_decay": 0.0, "checkpoint_every": 1}},
        "ldm": {"conditioning": "clap-audio", "encoders": {"clap": str(clap)}, "unet": size["unet"], "train": loop},
        "sample": {"prompts": []},
    }
    path = root / f"config-{name.replace(' ', '-')}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def timed_train(config) -> list[tuple[float, float]]:
    """(wall, cpu) at the end of every training step of one `train ldm` run."""
    import shutil

    from training.tasks import ldm

    marks: list[tuple[float, float]] = []
    original = ldm.run

    def run(session, state, loader, train_step, **kwargs):
        def step(batches):
            out = train_step(batches)
            marks.append((time.perf_counter(), time.process_time()))
            return out

        return original(session, state, loader, step, **kwargs)

    shutil.rmtree(config.ldm_dir, ignore_errors=True)  # each setting trains from step 0
    ldm.run = run
    try:
        ldm.train(config)
    finally:
        ldm.run = original
    return marks


def measure(args) -> dict:
    import torch

    from training.tasks import encode_latents, vae

    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="t2a-augment-cost-"))
    started = time.perf_counter()
    shards = corpus(root / "shards", args.samples, args.seconds)
    clap = build_clap(root / "clap", args.size)
    first = load_config(config_file(root, shards, clap, args, {}, "prepare"))
    vae.train(first)
    encode_latents.encode(first)
    prepared = time.perf_counter() - started
    rows = {}
    for name, augment in SETTINGS.items():
        if args.only and name.split()[0] not in args.only:
            continue
        config = load_config(config_file(root, shards, clap, args, augment, name))
        marks = timed_train(config)
        steady = marks[args.warmup - 1 :] if args.warmup else [(marks[0][0], marks[0][1])] + marks
        n = len(steady) - 1
        wall = (steady[-1][0] - steady[0][0]) / n
        cpu = (steady[-1][1] - steady[0][1]) / n
        rows[name] = {"step_s": round(wall, 3), "cpu_s_per_step": round(cpu, 3), "steps_timed": n}
        print(name, rows[name], flush=True)
    base = rows.get("off")
    if base:
        for row in rows.values():
            row["cpu_vs_off"] = round(row["cpu_s_per_step"] / base["cpu_s_per_step"], 2)
    return {
        "machine": machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": args.threads,
        "device": args.device,
        "size": args.size,
        "batch": args.batch,
        "clip_seconds": args.seconds,
        "train_clips": 4 * max(1, args.samples // 4),
        "prepare_s": round(prepared, 1),
        "settings": rows,
        "cpu_s_per_augmented_sample": breakdown(root, args),
    }


def breakdown(root: Path, args) -> dict:
    """CPU seconds per augmented sample of each part, measured alone on the run `measure` prepared: the loader's
    work (AudioAugment: read and decode the audio, compose or mix, mel), the VAE encoder on the new mel and the
    CLAP audio tower on the new waveform."""
    import numpy as np
    import torch
    from diffusers import AutoencoderKL

    from pipelines.core.features import get_profile
    from training.config import MixupConfig, ReprogramConfig
    from training.data.clips import clip_index
    from training.data.examples import AudioAugment
    from training.models.conditioning import ClapAudioEmbedder
    from training.models.vae import encode_moments
    from training.tasks.encode_latents import vae_model_dir

    config = load_config(root / "config-prepare.yaml")
    clips = clip_index(config.ldm_data, "train", config.run)
    vae = AutoencoderKL.from_pretrained(vae_model_dir(config)).eval()
    embed = ClapAudioEmbedder(config.ldm.encoders.clap)
    rate, frames = get_profile("audioldm").sample_rate, SIZES[args.size]["frames"]
    out = {}
    for name, augment in {
        "reprogram": AudioAugment.of("audioldm", ReprogramConfig(probability=1.0), None, clips),
        "mixup-waveform": AudioAugment.of("audioldm", None, MixupConfig(probability=1.0, domain="waveform"), clips),
    }.items():
        parts = {"loader": 0.0, "clap_features": 0.0, "vae": 0.0, "clap_tower": 0.0}
        n = min(len(clips), 8)
        for i in range(n):
            start = time.process_time()
            mel, _, _, wave = augment(clips.key(i), None, "", (64, STORED_FRAMES), np.random.default_rng(i))
            parts["loader"] += time.process_time() - start
            start = time.process_time()
            with torch.no_grad():
                encode_moments(vae, torch.from_numpy(mel[:, :frames].T.copy()).float()[None, None])
            parts["vae"] += time.process_time() - start
            start = time.process_time()
            features = embed.features(wave, rate)
            parts["clap_features"] += time.process_time() - start
            start = time.process_time()
            embed.embed_features(features)
            parts["clap_tower"] += time.process_time() - start
        out[name] = {part: round(seconds / n, 3) for part, seconds in parts.items()}
        print(name, out[name], flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", choices=list(SIZES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16, help="the demo's LDM batch is 16")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (AudioSet/AudioCaps clips: 10 s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="setting names to run (off, mixup-latent, mixup-waveform, reprogram)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = measure(args)
    out = args.out or ROOT / "bench" / "out" / f"augment_cost_{args.size}_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
