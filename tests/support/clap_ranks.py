"""A worker for torch.multiprocessing.spawn in tests/training/tasks/test_clap.py (spawned children
import it by name, which a test module under --import-mode=importlib cannot offer)."""

from __future__ import annotations

from pathlib import Path

import torch


def ranks_gradient(rank: int, world: int, port: int, audio: torch.Tensor, text: torch.Tensor, out: Path) -> None:
    """One DDP-style rank: its half of the batch through a shared linear map; the gradient averaged
    over ranks (what DDP does) is saved by rank 0."""
    import torch.distributed as dist

    from training.tasks.clap import global_contrastive_loss

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        proj, scale = torch.nn.Linear(4, 3), torch.nn.Parameter(torch.tensor(1.5))
        rows = slice(rank * len(audio) // world, (rank + 1) * len(audio) // world)
        norm = lambda x: torch.nn.functional.normalize(proj(x), dim=-1)  # noqa: E731
        loss = global_contrastive_loss(norm(audio[rows]), norm(text[rows]), scale, scale)
        loss.backward()
        grads = [proj.weight.grad, scale.grad]
        for grad in grads:
            dist.all_reduce(grad)
            grad /= world
        if rank == 0:
            torch.save({"loss": loss.detach(), "grads": grads}, out)
    finally:
        dist.destroy_process_group()
