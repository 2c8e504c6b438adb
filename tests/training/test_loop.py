"""The loop's speed settings (LoopConfig: compile, channels_last, fused_adamw, attention): honoured by the
session and the LDM trainer on the CPU, the same function computed, and free to change on resume."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from tiny_training import tiny_ldm_config, tiny_run_config
from train_corpus import build_train_corpus

from demo.models import build_clap
from training.config import DataConfig, LoopConfig, TrainConfig, load_config
from training.loop import Session, _check_same_run, configure_model
from training.models.ldm import build_unet

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    conditioner = SimpleNamespace(name="clap-audio", kind="class", dim=6)
    return build_unet(tiny_ldm_config("clap-audio"), conditioner, 4, (16, 16)).eval()


def forward(unet) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 4, 16, 16, generator=generator)
    if next(p for p in unet.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last):
        latents = latents.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        return unet(latents, torch.tensor([10, 500]), None, class_labels=torch.randn(2, 6, generator=generator)).sample


def test_attention_and_channels_last_are_applied_and_compute_the_same():
    reference = forward(tiny_unet())
    eager = configure_model(tiny_unet(), LoopConfig(attention="eager"))
    assert {type(p) for p in eager.attn_processors.values()} == {AttnProcessor}
    sdpa = configure_model(tiny_unet(), LoopConfig())
    assert {type(p) for p in sdpa.attn_processors.values()} == {AttnProcessor2_0}
    nhwc = configure_model(tiny_unet(), LoopConfig(channels_last=True))
    weights = [p for p in nhwc.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    assert not tiny_unet().conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    for model in (eager, sdpa, nhwc):
        torch.testing.assert_close(forward(model), reference, rtol=1e-4, atol=1e-5)


def test_models_without_diffusers_attention_are_left_alone():
    conv = torch.nn.Conv2d(2, 3, 3)
    assert configure_model(conv, LoopConfig(attention="eager")) is conv
    assert not conv.weight.is_contiguous(memory_format=torch.channels_last)


def session(tmp_path: Path, **loop) -> Session:
    config = TrainConfig(run=tmp_path / "run", device="cpu", data=DataConfig(shards=str(tmp_path)))
    return Session(config, LoopConfig(**loop), tmp_path / "run" / "model")


@pytest.mark.parametrize("fused", [False, True])
def test_fused_adamw_is_the_optimizer_asked_for_and_takes_the_same_step(tmp_path, fused):
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    plain = torch.nn.Linear(8, 4)
    plain.load_state_dict(model.state_dict())
    opt, _ = session(tmp_path, fused_adamw=fused).optimizer(model.parameters())
    assert bool(opt.defaults.get("fused")) is fused
    reference = torch.optim.AdamW(plain.parameters(), lr=1e-4)
    x = torch.randn(16, 8)
    for module, optimizer in ((model, opt), (plain, reference)):
        for _ in range(3):
            module(x).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
    torch.testing.assert_close(model.weight, plain.weight)
    assert not torch.equal(model.weight, torch.nn.Linear(8, 4).weight)


def test_the_ldm_trainer_honours_the_speed_settings(tmp_path, monkeypatch):
    """A 2-step LDM run with channels_last, fused AdamW, eager attention and compile: what the loss sees,
    which optimizer steps and what is compiled are the ones asked for."""
    import training.loop as loop_module
    import training.models.ldm as ldm_model
    from training.tasks import encode_latents, ldm, vae

    corpus, clap = build_train_corpus(tmp_path / "shards"), build_clap(tmp_path / "clap")
    speed = {"channels_last": True, "fused_adamw": True, "attention": "eager", "compile": True}
    path = tiny_run_config(
        tmp_path,
        corpus,
        clap,
        **{
            "vae.train.steps": 2,
            "ldm.train.steps": 2,
            "sample.prompts": [],
            **{f"ldm.train.{k}": v for k, v in speed.items()},
        },
    )
    config = load_config(path)
    vae.train(config)
    encode_latents.encode(config)
    seen, optimizers, real = [], [], ldm_model.diffusion_loss

    def spy(unet, scheduler, latents, *args, **kwargs):
        weight = next(p for p in unet.parameters() if p.dim() == 4)
        seen.append(
            (
                {type(p) for p in unet.attn_processors.values()},
                weight.is_contiguous(memory_format=torch.channels_last),
                latents.is_contiguous(memory_format=torch.channels_last),
            )
        )
        return real(unet, scheduler, latents, *args, **kwargs)

    class RecordingAdamW(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            optimizers.append(self)

    compiled = []

    def compile_spy(model, *args, **kwargs):  # inductor's CPU compile takes minutes: record the call instead
        compiled.append(model)
        return model

    monkeypatch.setattr(ldm_model, "diffusion_loss", spy)
    monkeypatch.setattr(torch, "compile", compile_spy)
    monkeypatch.setattr(loop_module.torch.optim, "AdamW", RecordingAdamW)
    ldm.train(config)
    training_calls = seen[:2]  # then validation, which runs the same model
    assert training_calls == [({AttnProcessor}, True, True)] * 2
    assert optimizers and all(opt.defaults["fused"] for opt in optimizers)
    assert len(compiled) == 1 and type(compiled[0]).__name__ == "UNet2DConditionModel"


def test_a_run_may_resume_with_other_speed_settings_but_not_another_schedule(tmp_path):
    saved = {"ldm": {"train": {**LoopConfig().model_dump(mode="json")}}}
    faster = {
        "ldm": {
            "train": {
                **saved["ldm"]["train"],
                "compile": True,
                "channels_last": True,
                "fused_adamw": True,
                "attention": "eager",
            }
        }
    }
    _check_same_run(saved, faster, tmp_path / "step-000001.pt")
    other = {"ldm": {"train": {**saved["ldm"]["train"], "mixed_precision": "bf16"}}}
    with pytest.raises(ValueError, match="mixed_precision"):
        _check_same_run(saved, other, tmp_path / "step-000001.pt")
