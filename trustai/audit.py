"""The uniform Audit interface and the audit registry.

Every audit has the same shape: ``measure(ctx, params) -> Measurement``. The context carries
whatever the stage has (dataset, policy adapter, checkpoint folder, training statistics); params are
the audit's own pydantic model, validated from the policy pack. An audit measures; it never decides.
"""

import importlib
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from trustai.errors import TrustaiUserError
from trustai.evidence import Inputs, Stage


class NoParams(BaseModel):
    """Params model of an audit that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class AuditContext:
    """Everything an audit may look at for one stage event. Fields a stage lacks are None."""

    stage: Stage
    artifact_dir: Path
    seed: int = 0
    dataset: Any = None  # a LeRobotDataset (data/monitor stages, held-out frames at checkpoints)
    reference: Any = None  # a reference LeRobotDataset (drift)
    policy: Any = None  # a PolicyAdapter (checkpoint stage)
    checkpoint_dir: Path | None = None  # the checkpoint's pretrained_model folder
    training: Any = None  # trustai.training_hooks.health.TrainingHealth (train stage)
    manifest: dict[str, Any] | None = None  # the run's provenance manifest
    inputs: Inputs = field(default_factory=Inputs)


@dataclass
class Measurement:
    """What ``Audit.measure`` returns: scalar metrics, row tables and artifact files it wrote."""

    metrics: dict[str, float | int | bool | None] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)


class Audit(ABC):
    """A named check. Subclasses set ``name``, ``version``, ``stages``, ``Params`` and ``measure``."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    stages: ClassVar[frozenset[Stage]]
    Params: ClassVar[type[BaseModel]] = NoParams

    @abstractmethod
    def measure(self, ctx: AuditContext, params: BaseModel) -> Measurement:
        """Measure and return metrics; raise on failure (the runtime records it as an error)."""


_REGISTRY: dict[str, type[Audit]] = {}


def register(cls: type[Audit]) -> type[Audit]:
    """Class decorator: make an audit findable by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def known_audits() -> list[str]:
    """Import every audit family and return the names of all registered audits."""
    import trustai.audits

    for module in pkgutil.iter_modules(trustai.audits.__path__):
        importlib.import_module(f"trustai.audits.{module.name}")
    return sorted(_REGISTRY)


def get_audit(name: str) -> type[Audit]:
    """Return the audit class called ``name`` (``family.check``), importing its family module.

    Raises TrustaiUserError when no such audit exists.
    """
    family = name.split(".", 1)[0]
    if name not in _REGISTRY:
        try:
            importlib.import_module(f"trustai.audits.{family}")
        except ModuleNotFoundError as exc:
            if exc.name != f"trustai.audits.{family}":
                raise
    if name not in _REGISTRY:
        raise TrustaiUserError(f"unknown audit {name!r}", fix=f"use one of: {', '.join(known_audits())}")
    return _REGISTRY[name]
