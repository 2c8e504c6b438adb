"""Training throughput of the token generators at the paper presets' sizes: tokens/s and FLOPs per step.

    python bench/token_throughput.py                         # CPU, batch 1, both models, fp32
    python bench/token_throughput.py --models dd --batch 2 --steps 3

One step is what `t2a train ar|dd` does after the text encoder (training/tasks/token_generator.py):
    ar   Li et al. 2023 preset (training/configs/vqgan-32k.yaml): TokenGPT, GPT-2 24 layers × 1024 wide,
         16 heads, |Z| = 1024, 50 × 5 = 250 tokens after a 30-state text prefix (768 wide, CLAP/RoBERTa's);
         loss eq. 6 (training.models.token_ar.ar_loss)
    dd   Diffsound preset (training/configs/diffsound.yaml): TokenDenoiser, 19 layers × 1024, 16 heads,
         K = 256, 53 × 5 = 265 tokens, cross-attention to 77 CLIP text states (512 wide), T = 100,
         mask-and-uniform; loss eq. 23 (training.models.token_dd.dd_loss)
then backward, gradient clipping and AdamW, as training/loop.py's Session does. The frozen text encoder's
forward is not included (it is the same for both and depends on the encoder chosen); text states are random.

FLOPs per step are counted with torch.utils.flop_counter over one forward + backward (matmuls and attention
as matmuls), not estimated; tokens/s = batch × sequence length / median step time over --steps timed steps
after --warmup untimed steps (the FLOP-counted step runs first). Results: one JSON line per model on stdout,
all of them in --out (bench/out/token_throughput.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.models import token_ar, token_dd  # noqa: E402


def build(name: str):
    if name == "ar":
        model = token_ar.TokenGPT(
            codebook_size=1024,
            sequence_length=250,
            text_dim=768,
            text_tokens=30,
            n_layer=24,
            n_head=16,
            n_embd=1024,
            dropout=0.1,
        )
        return model, 250, 30, 768, lambda m, seq, states, mask, g: token_ar.ar_loss(m, states, mask, seq)
    schedule = token_dd.DiscreteSchedule(256, 100, "mask-uniform", 0.9)
    model = token_dd.TokenDenoiser(
        codebook_size=256, grid=(53, 5), text_dim=512, timesteps=100, layers=19, heads=16, dim=1024
    )
    return model, 265, 77, 512, lambda m, seq, states, mask, g: token_dd.dd_loss(m, schedule, seq, states, mask, g)[0]


def measure(name: str, batch: int, steps: int, device: str, warmup: int = 1) -> dict:
    torch.manual_seed(0)
    model, length, text_tokens, text_dim, loss_fn = build(name)
    model.to(device).train()
    vocabulary = 1024 if name == "ar" else 256
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    sequence = torch.randint(vocabulary, (batch, length), generator=generator).to(device)
    states = torch.randn(batch, text_tokens, text_dim, generator=generator).to(device)
    mask = torch.ones(batch, text_tokens, device=device)

    def step() -> None:
        loss = loss_fn(model, sequence, states, mask, generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as counter:
        loss_fn(model, sequence, states, mask, generator).backward()
    opt.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    for _ in range(warmup):  # the FLOP-counted step already ran once: allocations are warm
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "model": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": batch,
        "sequence": length,
        "step_s": median,
        "tokens_per_s": batch * length / median,
        "flops_per_step": flops,
        "flops_per_token": flops / (batch * length),
        "achieved_gflop_per_s": flops / median / 1e9,
        "threads": torch.get_num_threads(),
        "device": device,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ar", "dd"], choices=["ar", "dd"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the FLOP-counted one")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "token_throughput.json")
    args = parser.parse_args()
    results = []
    for name in args.models:
        results.append(measure(name, args.batch, args.steps, args.device, args.warmup))
        print(json.dumps(results[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
