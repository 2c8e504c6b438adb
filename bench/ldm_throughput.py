"""LDM training throughput and model-FLOPs utilisation of an AudioLDM-S-size UNet on pre-encoded latents.

    python bench/ldm_throughput.py                       # CPU: batch 2, fp32 and bf16
    python bench/ldm_throughput.py --device cuda --batches 64 128 256 --dtypes bf16

One training step is what train_ldm.py does: a DDPM loss at a uniform timestep (training.models.ldm.
diffusion_loss, ε target), backward, AdamW. The UNet is training.models.ldm.build_unet with AudioLDM-S's
widths (AudioLDM App. B: c_u = 128 → [128, 256, 384, 640], two layers per block) in the clap-audio layout
(512-wide CLAP vector through the class embedding), on 8 × 256 × 16 latents (10.24 s at r = 4).

FLOPs per sample are counted with torch.utils.flop_counter over one forward + backward (matmuls, convs,
attention), not estimated; MFU = achieved model FLOP/s ÷ the device's dense peak (the H100 SXM datasheet
for bf16, or a measured 2048² matmul on a CPU). Results: JSON on stdout and in bench/out/.
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
from clap_throughput import describe, measured_matmul  # noqa: E402

from training.config import LdmConfig, UnetConfig  # noqa: E402
from training.models.ldm import build_scheduler, build_unet, diffusion_loss  # noqa: E402

LATENT = (8, 256, 16)  # C, T/r, n_mels/r for 10.24 s of the audioldm profile
CLAP_DIM = 512
H100_BF16 = 989e12  # dense bf16, H100 SXM datasheet
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def build(device: torch.device):
    cfg = LdmConfig(unet=UnetConfig(block_out_channels=[128, 256, 384, 640], layers_per_block=2, attention_head_dim=8))
    conditioner = SimpleNamespace(name="clap-audio", kind="class", dim=CLAP_DIM)
    unet = build_unet(cfg, conditioner, LATENT[0], LATENT[1]).to(device).train()
    return unet, build_scheduler(cfg.scheduler)


def step_fn(unet, scheduler, opt, batch: int, device: torch.device, dtype: str):
    latents = torch.randn(batch, *LATENT, device=device)
    condition = torch.nn.functional.normalize(torch.randn(batch, CLAP_DIM, device=device), dim=-1)
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        with torch.autocast(device.type, dtype=DTYPES[dtype], enabled=dtype != "fp32"):
            loss = diffusion_loss(
                unet, scheduler, latents, {"encoder_hidden_states": None, "class_labels": condition}, generator
            )
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def flops_per_sample(unet, scheduler, device: torch.device) -> float:
    counter = FlopCounterMode(display=False)
    latents = torch.randn(1, *LATENT, device=device)
    condition = torch.randn(1, CLAP_DIM, device=device)
    with counter:
        diffusion_loss(
            unet,
            scheduler,
            latents,
            {"encoder_hidden_states": None, "class_labels": condition},
            torch.Generator().manual_seed(0),
        ).backward()
    unet.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def timed(run, device: torch.device, repeats: int) -> float:
    times = []
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[2])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    unet, scheduler = build(device)
    params = sum(p.numel() for p in unet.parameters())
    flops = flops_per_sample(unet, scheduler, device)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-5)
    rows = []
    for dtype in args.dtypes:
        peak = (
            H100_BF16
            if device.type == "cuda" and "H100" in torch.cuda.get_device_name() and dtype == "bf16"
            else measured_matmul(device, DTYPES[dtype])
        )
        for batch in args.batches:
            seconds = timed(step_fn(unet, scheduler, opt, batch, device, dtype), device, args.repeats)
            rate = batch / seconds
            rows.append(
                {
                    "dtype": dtype,
                    "batch": batch,
                    "step_s": round(seconds, 4),
                    "samples_per_s": round(rate, 2),
                    "achieved_tflops": round(rate * flops / 1e12, 3),
                    "peak_tflops": round(peak / 1e12, 2),
                    "mfu": round(rate * flops / peak, 4),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    result = {
        "device": describe(device),
        "machine": machine(),
        "parameters": params,
        "latent": list(LATENT),
        "gflop_per_sample_fwd_bwd": round(flops / 1e9, 1),
        "rows": rows,
    }
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"ldm_throughput_{device.type}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
