"""`TrainState`: everything a resume needs, saved atomically, and the checkpoint folder around it.

    <run>/<model>/checkpoints/step-000100.pt   one TrainState (torch.save of plain containers + tensors)
    <run>/<model>/checkpoints/latest.json       {"step": 100, "file": "step-000100.pt"}, replaced last

A checkpoint is written to a temporary name in the same folder and renamed (a killed run never
leaves a half checkpoint behind it, and `latest.json` only ever names a whole one); the two most
recent are kept. It is loaded with `torch.load(weights_only=True)`: nothing in it unpickles code.

The state holds the models, the EMA, the optimizers, the LR schedulers, the grad scaler, the step,
and per rank the RNG states (Python, NumPy, torch, CUDA, the training noise generator) and the
loader state (training/data/loader.py), so that a resumed run continues with the same batches and the
same noise: on CPU its losses equal an uninterrupted run's (tests/training/test_resume.py).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.core.io import atomic_path, write_text_atomic

log = logging.getLogger(__name__)
SCHEMA = "t2a.train-state/1"
LATEST = "latest.json"
KEEP = 2


@dataclass
class TrainState:
    models: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any] = field(default_factory=dict)  # torch LR schedulers
    ema: Any | None = None  # diffusers.training_utils.EMAModel of models["model"]
    scaler: torch.amp.GradScaler | None = None
    step: int = 0
    rank_states: list[dict[str, Any]] = field(default_factory=list)  # per rank: rng + loader (see rank_state)
    config: dict[str, Any] = field(default_factory=dict)  # the resolved training config, for the record

    def state_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "step": self.step,
            "models": {name: _unwrap(model).state_dict() for name, model in self.models.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: sched.state_dict() for name, sched in self.schedulers.items()},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rank_states": self.rank_states,
            "config": json.dumps(self.config, sort_keys=True, default=str),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} checkpoint (schema {state.get('schema')!r})")
        for name, model in self.models.items():
            _unwrap(model).load_state_dict(state["models"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.rank_states = list(state["rank_states"])


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


# --- per-rank randomness and loader position ------------------------------------------------------


def rank_state(generator: torch.Generator, loader_state: dict[str, Any]) -> dict[str, Any]:
    """This rank's RNG states and loader state, in containers `weights_only` loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": _to_lists(random.getstate()),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "loader": json.dumps(loader_state, sort_keys=True),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rank_state(state: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
    """Set the RNGs from `rank_state`'s record; returns the loader state."""
    random.setstate(_to_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    return json.loads(state["loader"])


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value


# --- the checkpoint folder -------------------------------------------------------------------------


def save_checkpoint(folder: Path, state: TrainState, keep: int = KEEP) -> Path:
    """Write `step-NNNNNN.pt` atomically, point `latest.json` at it, keep the newest `keep`."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"step-{state.step:06d}.pt"
    with atomic_path(folder / name) as temp:
        torch.save(state.state_dict(), temp)
    _write_json(folder / LATEST, {"step": state.step, "file": name})
    for old in sorted(folder.glob("step-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    log.info("checkpoint %s", folder / name)
    return folder / name


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint `latest.json` names, or None when the run has none yet."""
    pointer = folder / LATEST
    if not pointer.is_file():
        return None
    path = folder / json.loads(pointer.read_text())["file"]
    if not path.is_file():
        raise FileNotFoundError(f"{pointer} names {path.name}, which is missing; delete {pointer} to start over")
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(payload, sort_keys=True) + "\n")
