"""What every training command shares: the accelerator, seeds, optimizer, checkpoints, logs, timing.

Each trainer (train_vae.py, train_ldm.py) keeps its own flat `train_step`; `Session` gives it the
pieces around it and `run` is the loop:

    for step in range(resumed step, loop.steps):
        batches = grad_accum batches from the loader   (the wait is timed: data-wait fraction)
        logs = train_step(batches)                      (forward, backward, clip, optimizer, EMA)
        log every log_every; validate every validate_every; checkpoint every checkpoint_every
    checkpoint, validate and export at the end

Precision: bf16 autocast on CUDA, fp32 on CPU (`mixed_precision: auto`). DDP comes from accelerate
(`accelerate launch` or `torchrun`); no `find_unused_parameters`. Every rank streams its own share
of the shards (training/data/loader.py splits them), so the DataLoader is not given to accelerate.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from training.config import LoopConfig, TrainConfig
from training.state import (
    TrainState,
    latest_checkpoint,
    load_checkpoint,
    rank_state,
    restore_rank_state,
    save_checkpoint,
)

log = logging.getLogger(__name__)


class Session:
    def __init__(self, config: TrainConfig, loop: LoopConfig, out_dir: Path):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.config, self.loop, self.out_dir = config, loop, Path(out_dir)
        cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
        if config.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device: cuda, but torch sees no CUDA GPU; set device: cpu (or auto)")
        precision = loop.mixed_precision
        if precision == "auto":
            precision = "no" if cpu else "bf16"
        ddp = DistributedDataParallelKwargs(find_unused_parameters=False)
        self.accelerator = Accelerator(cpu=cpu, mixed_precision=precision, kwargs_handlers=[ddp])
        self.device = self.accelerator.device
        self.rank, self.world_size = self.accelerator.process_index, self.accelerator.num_processes
        torch.manual_seed(config.seed * 1009 + self.rank)
        # The training noise (timesteps, ε, posterior samples, CFG dropout): one generator per rank.
        self.generator = torch.Generator().manual_seed(config.seed * 7919 + self.rank)
        self.logs = Logs(self.out_dir, enabled=self.accelerator.is_main_process)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def optimizer(self, parameters, optim=None) -> tuple[torch.optim.Optimizer, Any]:
        """AdamW (fused when loop.fused_adamw) and a linear warm-up to a constant rate."""
        optim = optim or self.loop.optim
        opt = torch.optim.AdamW(
            parameters,
            lr=optim.lr,
            betas=optim.betas,
            weight_decay=optim.weight_decay,
            **({"fused": True} if self.loop.fused_adamw else {}),
        )
        warmup = optim.warmup_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
        return opt, schedule

    def configure(self, model: torch.nn.Module) -> torch.nn.Module:
        """The loop's speed settings applied to a model before it is prepared: see `configure_model`."""
        return configure_model(model, self.loop)

    def randn(self, shape, like: torch.Tensor) -> torch.Tensor:
        """Noise from this rank's generator (on the CPU, so a run is reproducible on any device)."""
        return torch.randn(shape, generator=self.generator).to(like.device, like.dtype)

    def clip_and_step(self, model, opt, schedule) -> float:
        """Gradient clipping (loop.optim.grad_clip), the optimizer and LR steps; returns the grad norm."""
        clip = self.loop.optim.grad_clip
        norm = self.accelerator.clip_grad_norm_(model.parameters(), clip if clip > 0 else float("inf"))
        opt.step()
        schedule.step()
        opt.zero_grad(set_to_none=True)
        return float(norm)

    def average_grads(self, module: torch.nn.Module) -> None:
        """Gradients of a module that is not DDP-wrapped (a GAN discriminator runs twice per step), averaged over ranks."""
        if self.world_size == 1:
            return
        for parameter in module.parameters():
            if parameter.grad is not None:
                torch.distributed.all_reduce(parameter.grad)
                parameter.grad /= self.world_size

    # --- resume and checkpoints ---------------------------------------------------------------------

    def resume(self, state: TrainState, loader) -> None:
        """Load the latest checkpoint into `state` (and the loader position), if the run has one."""
        path = latest_checkpoint(self.out_dir / "checkpoints")
        if path is None:
            return
        saved = load_checkpoint(path)
        _check_same_run(json.loads(saved["config"]), state.config, path)
        state.load_state_dict(saved)
        self.logs.resume(state.step)
        if len(state.rank_states) == self.world_size:
            loader.load_state_dict(restore_rank_state(state.rank_states[self.rank], self.generator))
        else:
            log.warning(
                "checkpoint has %d rank states, this run %d ranks: the data stream restarts",
                len(state.rank_states),
                self.world_size,
            )
        log.info("resumed from %s at step %d", path, state.step)

    def checkpoint(self, state: TrainState, loader) -> None:
        from accelerate.utils import gather_object

        mine = rank_state(self.generator, loader.state_dict())
        state.rank_states = gather_object([mine]) if self.world_size > 1 else [mine]
        if self.is_main:
            save_checkpoint(self.out_dir / "checkpoints", state)
        self.accelerator.wait_for_everyone()


def run(
    session: Session,
    state: TrainState,
    loader,
    train_step: Callable[[list[dict[str, Any]]], dict[str, float]],
    *,
    validate: Callable[[int], dict[str, float]] | None = None,
) -> TrainState:
    """The loop: from the state's step to loop.steps; see the module docstring."""
    loop, batch = session.loop, loader.stream_args["batch_size"]  # the loader's: CLAP may batch differently from data
    if state.scaler is None:  # fp16 mixed precision: accelerate's loss scaler, checkpointed with the rest
        state.scaler = session.accelerator.scaler
    session.resume(state, loader)
    batches = iter(loader)
    timer = Timer()
    while state.step < loop.steps:
        with timer.data():
            group = [next(batches) for _ in range(loop.optim.grad_accum)]
        with timer.compute():
            logs = train_step(group)
        state.step += 1
        if state.step % loop.log_every == 0 or state.step == loop.steps:
            samples = batch * loop.optim.grad_accum * session.world_size
            logs |= timer.report(samples) | {
                "lr": state.schedulers["model"].get_last_lr()[0],
                "skipped": sum(loader.errors.values()),
            }
            session.logs.scalars(state.step, logs)
        if validate and loop.validate_every and state.step % loop.validate_every == 0 and state.step < loop.steps:
            session.logs.scalars(state.step, validate(state.step))
        if state.step % loop.checkpoint_every == 0 or state.step == loop.steps:
            session.checkpoint(state, loader)
    if validate:
        session.logs.scalars(state.step, validate(state.step))
    return state


# What may change between a run and its resumption: the length and cadence of the schedule, and the
# speed settings (LoopConfig: the same step computed another way, e.g. a run resumed on another machine).
_RESUMABLE = {
    "steps",
    "checkpoint_every",
    "log_every",
    "validate_every",
    "compile",
    "channels_last",
    "fused_adamw",
    "attention",
}


def configure_model(model: torch.nn.Module, loop: LoopConfig) -> torch.nn.Module:
    """`loop.attention` for a diffusers model's attention layers, and `loop.channels_last` for its 4-D
    weights (cuDNN's NHWC convolutions on tensor cores). In place.

    diffusers already gives every attention layer AttnProcessor2_0 (F.scaled_dot_product_attention:
    flash or memory-efficient kernels); "eager" swaps in AttnProcessor (matmul, softmax, matmul), the
    reference the benchmark compares against. Models without diffusers attention are left as they are."""
    if loop.attention == "eager" and getattr(model, "attn_processors", None):
        from diffusers.models.attention_processor import AttnProcessor

        model.set_attn_processor(AttnProcessor())
    if loop.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def _check_same_run(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse to resume a checkpoint made with other settings: it would silently mix two runs."""
    if not saved or not current:
        return
    changed = sorted(_diff(saved, current))
    if changed:
        raise ValueError(
            f"{path} was made with other settings ({', '.join(changed[:5])} changed): "
            f"use another `run` folder, or delete {path.parent} to start this one over"
        )


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d
            for key in sorted(set(a) | set(b))
            if key not in _RESUMABLE
            for d in _diff(a.get(key), b.get(key), f"{prefix}{key}.")
        ]
    return [] if a == b else [prefix.rstrip(".")]


class Timer:
    """Step time split into waiting for data and computing; reset at every report."""

    def __init__(self) -> None:
        self.waiting = self.computing = 0.0
        self.steps = 0

    def data(self):
        return _Span(self, "waiting")

    def compute(self):
        return _Span(self, "computing")

    def report(self, samples_per_step: int) -> dict[str, float]:
        total = self.waiting + self.computing
        steps = max(self.steps, 1)
        out = {
            "samples_per_s": samples_per_step * steps / total if total else 0.0,
            "data_wait": self.waiting / total if total else 0.0,
            "step_s": total / steps,
        }
        self.waiting = self.computing = 0.0
        self.steps = 0
        return out


class _Span:
    def __init__(self, timer: Timer, slot: str):
        self.timer, self.slot = timer, slot

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        setattr(self.timer, self.slot, getattr(self.timer, self.slot) + time.perf_counter() - self.start)
        if self.slot == "computing":
            self.timer.steps += 1


class Logs:
    """TensorBoard-format event files under <out>/logs, and metrics.jsonl beside them (main rank only)."""

    def __init__(self, out_dir: Path, enabled: bool = True):
        self.enabled, self.out_dir = enabled, out_dir
        self.jsonl = out_dir / "metrics.jsonl"
        self._writer = None
        if enabled:
            out_dir.mkdir(parents=True, exist_ok=True)
            self._open()

    def _open(self, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.out_dir / "logs"), purge_step=purge_step)

    def resume(self, step: int) -> None:
        """Forget what a killed run logged after its last checkpoint (it is about to be redone)."""
        if not self.enabled:
            return
        if self.jsonl.is_file():
            kept = [line for line in self.jsonl.read_text().splitlines() if json.loads(line)["step"] <= step]
            self.jsonl.write_text("".join(f"{line}\n" for line in kept))
        self._writer.close()
        self._open(purge_step=step + 1)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled or not values:
            return
        clean = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
        for name, value in clean.items():
            self._writer.add_scalar(name, value, step)
        with self.jsonl.open("a") as out:
            out.write(json.dumps({"step": step, **clean}, sort_keys=True) + "\n")
        log.info("step %d %s", step, " ".join(f"{k}={v:.4g}" for k, v in sorted(clean.items())))

    def audio(self, step: int, tag: str, wave: torch.Tensor, sample_rate: int) -> None:
        if self.enabled:
            self._writer.add_audio(tag, wave.detach().float().cpu().clamp(-1, 1), step, sample_rate=sample_rate)

    def image(self, step: int, tag: str, mel: torch.Tensor) -> None:
        """A mel [T, n_mels] as a spectrogram image (frequency up, time right), min-max scaled."""
        if self.enabled:
            image = mel.detach().float().cpu().T.flip(0)
            image = (image - image.min()) / (image.max() - image.min() + 1e-8)
            self._writer.add_image(tag, image[None], step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def add_mean(logs: dict[str, float], parts: dict[str, Any], n: int) -> None:
    """Accumulate one micro-batch's logged values into the step's means (gradient accumulation)."""
    for key, value in parts.items():
        logs[key] = logs.get(key, 0.0) + float(value) / n


def command(doc: str, action: Callable[[TrainConfig], Path], argv: list[str] | None = None) -> Path:
    """`python -m training.tasks.<module> --config …` (what `accelerate launch` / `torchrun` start)."""
    import argparse

    from training.config import load_config

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return action(load_config(args.config))


def save_model_atomic(model, target: Path) -> None:
    """`save_pretrained` into a temporary folder, then swapped in: a reader never sees half a model."""
    from pipelines.core.io import staged_folder

    with staged_folder(target) as temp:
        model.save_pretrained(temp, safe_serialization=True)


def read_metrics(out_dir: Path) -> Iterator[dict[str, Any]]:
    path = Path(out_dir) / "metrics.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            yield json.loads(line)
