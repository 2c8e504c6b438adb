"""CLAP audio-embedding throughput: clips/s (one 10-s, 48 kHz window per clip) by batch size, for
the transformers backend the annotate job uses, with a FLOP-based ceiling.

Three rates per batch size:
  - features: ClapFeatureExtractor alone (numpy log-mel on the CPU, one process);
  - model: the model's forward on precomputed features, on the device (what the ceiling bounds);
  - end to end: `TransformersClap.embed_audio` (features + forward), what the job's RunInference calls.
The ceiling is the device's peak FLOP/s divided by the forward FLOPs of one window (counted with
torch.utils.flop_counter.FlopCounterMode). Peak: on CPU a measured matmul rate in this dtype; on a
GPU the datasheet dense rate when it is known (H100 SXM: 989 TFLOP/s bf16/fp16), else a measured
matmul rate. Models are randomly initialised from configs: `--size real` is transformers'
ClapConfig() defaults (HTSAT-tiny audio + RoBERTa-base text, as laion/clap-htsat-unfused), nothing
is downloaded.

    python bench/clap_throughput.py --device cpu --size tiny
    python bench/clap_throughput.py --device cpu --size real --batches 8 16
    python bench/clap_throughput.py --device cuda --size real --dtype bf16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _measure import machine  # noqa: E402

from pipelines.annotate.encoders.base import torch_device  # noqa: E402
from pipelines.annotate.encoders.clap_transformers import TransformersClap  # noqa: E402
from training.models.clap import roberta_tokenizer, tiny_clap_config  # noqa: E402

WINDOW = 480000
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Dense tensor-core peaks, NVIDIA H100 SXM datasheet (FLOP/s); fp32 without TF32 is 67 TFLOP/s.
H100_PEAK = {"bf16": 989.4e12, "fp16": 989.4e12, "fp32": 66.9e12}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--size", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per batch size, after one warm-up run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    if args.device == "cpu" and args.dtype == "fp16":
        parser.error("fp16 on CPU is emulated (no fp16 arithmetic units): use fp32 or bf16")
    device = torch_device(args.device)
    encoder = build_encoder(args.size, device)
    flops = window_flops(encoder.model)
    peak, peak_source = peak_flops(device, args.dtype)
    rows = [measure(encoder, batch, args.dtype, args.repeats) for batch in args.batches]
    result = {
        "size": args.size,
        "device": describe(device),
        "dtype": args.dtype,
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gflop_per_window": round(flops / 1e9, 3),
        "peak_tflops": round(peak / 1e12, 3),
        "peak_source": peak_source,
        "ceiling_clips_per_s": round(peak / flops, 1),
        "rows": rows,
    }
    table = markdown(result)
    print(table)
    print(json.dumps(result))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"clap_throughput-{args.size}-{args.device}-{args.dtype}.md").write_text(table + "\n")


def build_encoder(size: str, device: torch.device) -> TransformersClap:
    tokenizer = roberta_tokenizer()  # text is not measured; the encoder needs a processor
    config = tiny_clap_config(len(tokenizer)) if size == "tiny" else transformers.ClapConfig()
    torch.manual_seed(0)
    model = transformers.ClapModel(config).eval().to(device)
    extractor = transformers.ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad")
    processor = transformers.ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer)
    return TransformersClap(model, processor, WINDOW, provenance={})


def features(encoder: TransformersClap, windows: np.ndarray) -> torch.Tensor:
    extracted = encoder.processor.feature_extractor(
        list(windows),
        sampling_rate=48000,
        max_length=WINDOW,
        truncation="rand_trunc",
        padding="repeatpad",
        return_tensors="pt",
    )
    return extracted["input_features"]  # [B, 1, 1001, 64]


def forward(encoder: TransformersClap, mel: torch.Tensor) -> torch.Tensor:
    is_longer = torch.zeros(mel.shape[0], 1, dtype=torch.bool, device=mel.device)
    return encoder.model.get_audio_features(input_features=mel, is_longer=is_longer).pooler_output


def window_flops(model: transformers.ClapModel) -> float:
    """Forward FLOPs of the audio tower + projection for one window (matmuls, convs, attention)."""
    device = next(model.parameters()).device
    mel = torch.zeros(1, 1, WINDOW // 480 + 1, 64, device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.get_audio_features(input_features=mel, is_longer=torch.zeros(1, 1, dtype=torch.bool, device=device))
    return float(counter.get_total_flops())


def peak_flops(device: torch.device, dtype: str) -> tuple[float, str]:
    if device.type == "cuda" and "H100" in torch.cuda.get_device_name(device):
        return H100_PEAK[dtype], "H100 SXM datasheet, dense"
    return measured_matmul(device, DTYPES[dtype]), f"measured {dtype} matmul 2048x2048"


def measured_matmul(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    run = lambda: torch.mm(a, b)  # noqa: E731
    seconds = timed(run, device, repeats)
    return 2 * n**3 / seconds


def timed(run: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of `repeats` runs after one warm-up; waits for the GPU before reading the clock."""
    times = []
    for i in range(repeats + 1):
        sync(device)
        started = time.perf_counter()
        run()
        sync(device)
        if i:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    if dtype == "fp32":
        return contextlib.nullcontext()
    # Matmuls and convs in half precision; layer norms and softmax stay in fp32 (autocast's lists).
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])


def measure(encoder: TransformersClap, batch: int, dtype: str, repeats: int) -> dict:
    device = encoder.device
    rng = np.random.default_rng(batch)
    windows = (0.1 * rng.standard_normal((batch, WINDOW))).astype(np.float32)
    features_s = timed(lambda: features(encoder, windows), torch.device("cpu"), repeats)
    mel = features(encoder, windows).to(device)
    with torch.inference_mode(), autocast(device, dtype):
        model_s = timed(lambda: forward(encoder, mel), device, repeats)
        end_to_end_s = timed(lambda: encoder.embed_audio(windows), device, repeats)
    return {
        "batch": batch,
        "features_clips_per_s": round(batch / features_s, 1),
        "model_clips_per_s": round(batch / model_s, 1),
        "end_to_end_clips_per_s": round(batch / end_to_end_s, 1),
    }


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}"


def markdown(result: dict) -> str:
    ceiling = result["ceiling_clips_per_s"]
    lines = [
        f"CLAP audio embedding, size {result['size']}, {result['device']}, {result['dtype']}, {result['torch_threads']} torch threads; "
        f"{result['gflop_per_window']} GFLOP per window; peak {result['peak_tflops']} TFLOP/s ({result['peak_source']}) "
        f"→ ceiling {ceiling} clips/s",
        "",
        "| batch | features (CPU) clips/s | model clips/s | model % of ceiling | end to end clips/s |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        share = 100 * row["model_clips_per_s"] / ceiling
        lines.append(
            f"| {row['batch']} | {row['features_clips_per_s']} | {row['model_clips_per_s']} | {share:.1f} % | {row['end_to_end_clips_per_s']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
