"""LDM training throughput and model-FLOPs utilisation of an AudioLDM-S-size UNet on pre-encoded latents.

    python bench/ldm_throughput.py                       # CPU: batch 2, fp32 and bf16
    python bench/ldm_throughput.py --device cuda --batches 64 128 256 --dtypes bf16
    python bench/ldm_throughput.py --device cuda --batches 256 --dtypes bf16 --compile --channels-last --fused-adamw

One training step is what `t2a train ldm` does (training/tasks/ldm.py): a DDPM loss at a uniform
timestep (training.models.ldm.diffusion_loss, ε target), backward, gradient clipping, AdamW. The UNet
is training.models.ldm.build_unet with AudioLDM-S's widths (AudioLDM App. B: c_u = 128 → [128, 256,
384, 640], two layers per block) in the clap-audio layout (512-wide CLAP vector through the class
embedding), on 8 × 256 × 16 latents (10.24 s at r = 4). `--size tiny` is a small UNet for a CPU dry run.

The trainer's speed settings (training/config.py LoopConfig, applied by training.loop.configure_model)
are options here: --compile (torch.compile), --channels-last (NHWC weights and latents), --fused-adamw,
--attention sdpa|eager. --noise-generator cpu is the trainer's (timesteps and ε drawn on the CPU so a
run is reproducible on any device, then copied); `device` draws them on the GPU, to measure that cost.

FLOPs per sample are counted with torch.utils.flop_counter over one forward + backward (matmuls, convs,
attention as matmuls: flops_per_sample), not estimated. MFU = achieved model FLOP/s ÷ the device's dense peak: for bf16 on an H100
or H200 the datasheet figure (DATASHEET_BF16), else a measured matmul; the measured matmul is reported
beside it either way (`mfu_vs_matmul`). Results: JSON on stdout and in --out (bench/out/ by default).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _measure import machine  # noqa: E402
from clap_throughput import describe  # noqa: E402

from training.config import LdmConfig, LoopConfig, SchedulerConfig, UnetConfig  # noqa: E402
from training.loop import configure_model  # noqa: E402
from training.models.ldm import build_scheduler, build_unet, diffusion_loss  # noqa: E402

CLAP_DIM = 512
SIZES = {
    # AudioLDM App. B (AudioLDM-S): 185.0 M parameters as built here; latents C × T/r × n_mels/r for 10.24 s.
    "audioldm-s": (
        UnetConfig(block_out_channels=[128, 256, 384, 640], layers_per_block=2, attention_head_dim=8),
        (8, 256, 16),
    ),
    # CLIPSonic §3 (training/configs/clipsonic-mel.yaml): the mel-domain UNet on 1 × 64 × 64 mel crops,
    # cross-attention to one 768-wide CLIP ViT-L/14 image embedding, cosine schedule of 4000 steps.
    "clipsonic-mel": (
        UnetConfig(block_out_channels=[128, 256, 384, 512], layers_per_block=3, attention_head_dim=4),
        (1, 64, 64),
    ),
    # A few hundred thousand parameters: the same code path in seconds on a CPU (bench/gpu_check.py --cpu-dry-run).
    "tiny": (UnetConfig(block_out_channels=[32, 64], layers_per_block=1, attention_head_dim=8), (8, 32, 16)),
}
# Dense bf16 tensor-core peaks from NVIDIA's datasheets, which print them "with sparsity" (2:4); dense is
# half. H200 datasheet: BFLOAT16 Tensor Core 1,979 TFLOPS (H200 SXM), 1,671 TFLOPS (H200 NVL). H100
# datasheet: 1,979 TFLOPS (H100 SXM). Matched against torch.cuda.get_device_name, most specific first.
DATASHEET_BF16 = {
    "H200 NVL": (
        1671e12 / 2,
        "NVIDIA H200 datasheet, H200 NVL: BFLOAT16 Tensor Core 1,671 TFLOPS with sparsity → 835.5 dense",
    ),
    "H200": (
        1979e12 / 2,
        "NVIDIA H200 datasheet, H200 SXM: BFLOAT16 Tensor Core 1,979 TFLOPS with sparsity → 989.5 dense",
    ),
    "H100 80GB HBM3": (
        1979e12 / 2,
        "NVIDIA H100 datasheet, H100 SXM: BFLOAT16 Tensor Core 1,979 TFLOPS with sparsity → 989.5 dense",
    ),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
CROSS = {"clipsonic-mel": 768}  # sizes conditioned by cross-attention on one token of this width (clip-image)


def datasheet_peak(device: torch.device, dtype: str) -> tuple[float, str] | None:
    """(FLOP/s, source) for bf16 on a GPU whose datasheet peak is known; None otherwise."""
    if device.type != "cuda" or dtype != "bf16":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in DATASHEET_BF16.items() if key in name), None)


def build(device: torch.device, size: str, loop: LoopConfig):
    unet_cfg, latent = SIZES[size]
    if size in CROSS:
        schedule = SchedulerConfig(num_train_timesteps=4000, beta_schedule="squaredcos_cap_v2")
        cfg = LdmConfig(unet=unet_cfg, conditioning="clip-image", scheduler=schedule)
        conditioner = SimpleNamespace(name="clip-image", kind="cross", dim=CROSS[size])
        return (
            configure_model(build_unet(cfg, conditioner, 1, latent[1]).to(device).train(), loop),
            build_scheduler(cfg.scheduler),
            latent,
        )
    cfg = LdmConfig(unet=unet_cfg)
    conditioner = SimpleNamespace(name="clap-audio", kind="class", dim=CLAP_DIM)
    unet = build_unet(cfg, conditioner, latent[0], latent[1]).to(device).train()
    return configure_model(unet, loop), build_scheduler(cfg.scheduler), latent


def make_step(model, params, scheduler, opt, batch: int, latent, device: torch.device, args):
    """One trainer step on fixed latents (pre-encoded: no data wait); returns a callable."""
    latents = torch.randn(batch, *latent, device=device)
    if args.channels_last:
        latents = latents.contiguous(memory_format=torch.channels_last)
    width = CROSS.get(args.size, CLAP_DIM)
    condition = torch.nn.functional.normalize(torch.randn(batch, width, device=device), dim=-1)
    generator = torch.Generator(device if args.noise_generator == "device" else "cpu").manual_seed(0)
    dtype = DTYPES[args.dtype]
    kwargs = (
        {"encoder_hidden_states": condition[:, None]}
        if args.size in CROSS
        else {"encoder_hidden_states": None, "class_labels": condition}
    )

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = diffusion_loss(model, scheduler, latents, kwargs, generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)  # the trainer's default optim.grad_clip
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def flops_per_sample(unet, scheduler, latent) -> dict[str, float]:
    """One sample's forward + backward, counted by torch.utils.flop_counter on a CPU copy of the model
    (the same figures whatever the device, and whatever kernels a GPU would pick):

    math: attention through SDPA's math kernel (matmul, softmax, matmul), as diffusers' eager
        AttnProcessor computes it: every matmul and convolution the model does, no recomputation.
        MFU's numerator; 310.1 GFLOP for AudioLDM-S with torch 2.14.
    fused: attention through SDPA's default CPU kernel, which the counter charges less for (274.5
        GFLOP for AudioLDM-S with torch 2.14; what this benchmark reported before it counted both)."""
    import contextlib
    import copy

    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = copy.deepcopy(unet).float().cpu()
    latents = torch.randn(1, *latent)
    if model.config.class_embed_type is None:  # cross-attention to one token (clipsonic-mel)
        kwargs = {"encoder_hidden_states": torch.randn(1, 1, model.config.cross_attention_dim)}
    else:
        kwargs = {"encoder_hidden_states": None, "class_labels": torch.randn(1, CLAP_DIM)}
    counts = {}
    for name, kernels in (("fused", contextlib.nullcontext()), ("math", sdpa_kernel(SDPBackend.MATH))):
        counter = FlopCounterMode(display=False)
        with counter, kernels:
            diffusion_loss(model, scheduler, latents, kwargs, torch.Generator().manual_seed(0)).backward()
        model.zero_grad(set_to_none=True)
        counts[name] = float(counter.get_total_flops())
    return counts


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run, device: torch.device, repeats: int, warmup: int) -> tuple[float, float]:
    """(median seconds of `repeats` runs, seconds of the first warm-up run: compilation, autotuning)."""
    times, first = [], 0.0
    for i in range(warmup + repeats):
        sync(device)
        started = time.perf_counter()
        run()
        sync(device)
        elapsed = time.perf_counter() - started
        if i == 0:
            first = elapsed
        if i >= warmup:
            times.append(elapsed)
    return statistics.median(times), first


def measured_matmul(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of one large matmul (8192² on a GPU, 2048² on a CPU) on random data: the attainable ceiling."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    seconds, _ = timed(lambda: torch.mm(a, b), device, repeats=10, warmup=2)
    return 2 * n**3 / seconds


def settings(args) -> dict:
    return {
        "size": args.size,
        "dtype": args.dtype,
        "compile": args.compile and args.compile_backend,
        "channels_last": args.channels_last,
        "fused_adamw": args.fused_adamw,
        "attention": args.attention,
        "noise_generator": args.noise_generator,
        "cudnn_benchmark": args.cudnn_benchmark,
    }


def run(args) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    loop = LoopConfig(channels_last=args.channels_last, fused_adamw=args.fused_adamw, attention=args.attention)
    unet, scheduler, latent = build(device, args.size, loop)
    params = [p for p in unet.parameters()]
    counted = flops_per_sample(unet, scheduler, latent)
    flops = counted["math"]
    opt = torch.optim.AdamW(params, lr=1e-5, **({"fused": True} if args.fused_adamw else {}))
    model = torch.compile(unet, backend=args.compile_backend) if args.compile else unet
    matmul = measured_matmul(device, DTYPES[args.dtype])
    sheet = datasheet_peak(device, args.dtype)
    peak, source = sheet if sheet else (matmul, f"measured {DTYPES[args.dtype]} matmul on this device")
    rows = []
    for batch in args.batches:
        row = {"batch": batch}
        try:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            step = make_step(model, params, scheduler, opt, batch, latent, device, args)
            seconds, first = timed(step, device, args.repeats, args.warmup)
        except torch.cuda.OutOfMemoryError:
            row["error"] = "out of memory"
            opt.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
        else:
            rate = batch / seconds
            row |= {
                "step_s": round(seconds, 5),
                "first_step_s": round(first, 3),
                "samples_per_s": round(rate, 2),
                "achieved_tflops": round(rate * flops / 1e12, 3),
                "mfu": round(rate * flops / peak, 4),
                "mfu_vs_matmul": round(rate * flops / matmul, 4),
            }
            if device.type == "cuda":
                row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        rows.append(row)
        print(json.dumps({**settings(args), **row}), file=sys.stderr)
    return {
        "device": describe(device),
        "machine": machine(),
        "torch": torch.__version__,
        "settings": settings(args),
        "parameters": sum(p.numel() for p in params),
        "latent": list(latent),
        "gflop_per_sample_fwd_bwd": round(flops / 1e9, 1),  # MFU's numerator: attention as matmuls
        "gflop_per_sample_fused_sdpa_count": round(counted["fused"] / 1e9, 1),
        "peak_tflops": round(peak / 1e12, 2),
        "peak_source": source,
        "matmul_tflops": round(matmul / 1e12, 2),
        "rows": rows,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="audioldm-s", choices=list(SIZES))
    parser.add_argument("--batches", type=int, nargs="+", default=[2])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per batch size (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (compilation, autotuning)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile's backend (aot_eager: tracing only, for a CPU dry run)",
    )
    parser.add_argument("--channels-last", action="store_true", help="NHWC weights and latents")
    parser.add_argument("--fused-adamw", action="store_true", help="AdamW(fused=True)")
    parser.add_argument("--attention", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--noise-generator", default="cpu", choices=["cpu", "device"])
    parser.add_argument("--no-cudnn-benchmark", dest="cudnn_benchmark", action="store_false")
    parser.add_argument("--out", type=Path, help="the JSON file (default bench/out/ldm_throughput_<device>.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    results = []
    for dtype in args.dtypes:
        args.dtype = dtype
        results.append(run(args))
    result = results[0] if len(results) == 1 else {"runs": results}
    out = args.out or ROOT / "bench" / "out" / f"ldm_throughput_{torch.device(args.device).type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
