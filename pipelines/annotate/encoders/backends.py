"""The CLAP backends by name (datasets.yaml `annotate.clap.backend`): each a module imported on first
use, so torch and the model library load only in processes that embed. The config validates names
against this registry; `loading.load_clap` builds the configured backend."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from pipelines.core.registry import Registry


@dataclass(frozen=True)
class ClapBackend:
    module: str  # defines load(config, device) -> AudioTextEncoder and provenance(config) -> dict

    def __call__(self, config: Any, device: str) -> Any:
        return importlib.import_module(self.module).load(config, device)

    def provenance(self, config: Any) -> dict[str, str]:
        return importlib.import_module(self.module).provenance(config)


CLAP_BACKENDS: Registry[ClapBackend] = Registry("CLAP backend")
CLAP_BACKENDS.register("transformers")(ClapBackend("pipelines.annotate.encoders.clap_transformers"))
CLAP_BACKENDS.register("laion_clap")(ClapBackend("pipelines.annotate.encoders.clap_laion"))
