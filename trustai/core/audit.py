"""The uniform Audit interface and the audit registry.

Every audit has the same shape: ``measure(ctx, params) -> Measurement``. The context carries
whatever the stage has (dataset, policy adapter, checkpoint folder, training statistics); params are
the audit's own pydantic model, validated from the policy pack. An audit measures; it never decides.

Every audit declares the metrics it emits (``Audit.metrics``): packs may only set thresholds on those
(``trustai.packs.loading``), and ``measure`` raises when it returns a metric it did not declare, so the
declaration cannot drift from what the audit does. An audit that ran but could not measure what its
metrics are about says so (``Measurement.inconclusive``) instead of returning numbers that would pass.
"""

import functools
import importlib
import os
import pkgutil
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from trustai.core.evidence import InputProvenance, Stage
from trustai.errors import TrustaiUserError


class NoParams(BaseModel):
    """Params model of an audit that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class AuditContext:
    """Everything an audit may look at for one stage event, in one shape wherever the audit runs (in
    this process or on a Ray worker: ``trustai.runtime.executor.AuditJob.context``). Fields a stage
    lacks are None."""

    stage: Stage
    artifact_dir: Path
    seed: int = 0
    dataset: Path | None = None  # the dataset's folder (data/monitor stages, held-out frames at checkpoints)
    reference: Path | None = None  # a reference dataset's folder (drift)
    policy: Any = None  # an already loaded PolicyAdapter; else audits load ``checkpoint_dir``
    checkpoint_dir: Path | None = None  # the checkpoint's pretrained_model folder
    training: dict[str, Any] | None = None  # train stage: the training hook's statistics summary
    manifest: dict[str, Any] | None = None  # the run's provenance manifest
    inputs: InputProvenance = field(default_factory=InputProvenance)


@dataclass
class Measurement:
    """What ``Audit.measure`` returns: scalar metrics, row tables and artifact files it wrote, and
    what it could not measure.

    ``inconclusive`` is the reason, when set, that the audit could not measure what some metrics are
    about (no image decoded, a policy that never succeeds, no held-out data); ``inconclusive_metrics``
    names those metrics (None: every metric). A threshold on such a metric is then never judged
    held: the finding is ``inconclusive`` (``trustai.packs.judging``). ``exceeds`` holds metrics that
    are only known to be greater than a value (nothing broke up to the largest ε tried): their value
    in ``metrics`` is None, and a threshold on one is judged only when the bound decides it.
    """

    metrics: dict[str, float | int | bool | None] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)
    inconclusive: str | None = None
    inconclusive_metrics: list[str] | None = None
    exceeds: dict[str, float] = field(default_factory=dict)


Direction = Literal["higher_is_better", "lower_is_better", "neutral"]


@dataclass(frozen=True)
class Metric:
    """What one metric an audit emits is: its ``unit`` (``count``, ``fraction``, ``s``, ...), which
    way is better (``neutral``: context, not a verdict), and what it means."""

    unit: str
    direction: Direction
    meaning: str


def declare(*tables: Mapping[str, Metric]) -> Mapping[str, Metric]:
    """An audit's ``metrics`` declaration: ``tables`` merged (later names win), read-only."""
    return MappingProxyType({name: metric for table in tables for name, metric in table.items()})


class UndeclaredMetricError(ValueError):
    """An audit returned a metric missing from its ``metrics`` declaration."""


class Audit(ABC):
    """A named check. Subclasses set ``name``, ``version``, ``stages``, ``Params``, ``metrics`` and
    ``measure``.

    ``metrics`` declares every metric ``measure`` may emit. A name may hold a ``<placeholder>`` for a
    part that depends on the data (``share_saliency_<input>``: a camera name); enumerate the parts
    that come from a fixed list instead, so a misspelt name cannot match.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    stages: ClassVar[frozenset[Stage]]
    Params: ClassVar[type[BaseModel]] = NoParams
    metrics: ClassVar[Mapping[str, Metric]] = MappingProxyType({})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("measure")
        if own is not None and not getattr(own, "__isabstractmethod__", False):
            cls.measure = _declared_only(own)  # type: ignore[method-assign]

    @classmethod
    def declares(cls, metric: str) -> bool:
        """True when ``metric`` is one of ``metrics``, or fits a declared name with placeholders."""
        return metric in cls.metrics or any(
            _pattern(declared).fullmatch(metric) for declared in cls.metrics if "<" in declared
        )

    @abstractmethod
    def measure(self, ctx: AuditContext, params: BaseModel) -> Measurement:
        """Measure and return metrics; raise on failure (the runtime records it as an error)."""


@functools.cache
def _pattern(declared: str) -> re.Pattern[str]:
    """``share_<method>_<input>`` as a regex where each placeholder matches one or more characters."""
    return re.compile(re.sub(r"<[^<>]+>", ".+", re.escape(declared)))


def _declared_only(measure: Any) -> Any:
    """``measure`` that raises UndeclaredMetricError when it returns a metric its audit does not declare."""

    @functools.wraps(measure)
    def checked(self: Audit, ctx: AuditContext, params: BaseModel) -> Measurement:
        result = measure(self, ctx, params)
        audit = type(self)
        if isinstance(result, Measurement):
            undeclared = sorted(m for m in result.metrics if not audit.declares(m))
            if undeclared:
                declared = ", ".join(sorted(audit.metrics)) or "none"
                raise UndeclaredMetricError(
                    f"audit {audit.name} emitted metric(s) {', '.join(undeclared)} missing from "
                    f"{audit.__name__}.metrics (declared: {declared})"
                )
        return result

    return checked


_REGISTRY: dict[str, type[Audit]] = {}

AUDITS_PACKAGE = "trustai.audits"  # one module or package per audit family
PLUGINS_ENV = "TRUSTAI_AUDIT_PLUGINS"
"""Comma-separated modules of audits of your own, imported before an audit name is looked up. An
environment variable, so subprocesses and Ray workers (which inherit it) find the same audits."""


def register(cls: type[Audit]) -> type[Audit]:
    """Class decorator: make an audit findable by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def _import_plugins() -> None:
    for name in os.environ.get(PLUGINS_ENV, "").split(","):
        if name.strip():
            try:
                importlib.import_module(name.strip())
            except ImportError as exc:
                raise TrustaiUserError(
                    f"cannot import audit plugin module {name.strip()!r}: {exc}",
                    where=PLUGINS_ENV,
                    fix="make the module importable (PYTHONPATH) or remove it from the variable",
                ) from None


def known_audits() -> list[str]:
    """Import every audit family (the packages and modules of ``trustai.audits``, and the plugin
    modules named in ``TRUSTAI_AUDIT_PLUGINS``) and return the names of all registered audits."""
    families = importlib.import_module(AUDITS_PACKAGE)  # by name: the registry sits below the audits
    for module in pkgutil.iter_modules(families.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{AUDITS_PACKAGE}.{module.name}")
    _import_plugins()
    return sorted(_REGISTRY)


def get_audit(name: str) -> type[Audit]:
    """Return the audit class called ``name`` (``family.check``), importing its family module
    (``trustai.audits.<family>``) or the plugin modules.

    Raises TrustaiUserError when no such audit exists.
    """
    family = name.split(".", 1)[0]
    if name not in _REGISTRY:
        try:
            importlib.import_module(f"{AUDITS_PACKAGE}.{family}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{AUDITS_PACKAGE}.{family}":
                raise
    if name not in _REGISTRY:
        _import_plugins()
    if name not in _REGISTRY:
        raise TrustaiUserError(f"unknown audit {name!r}", fix=f"use one of: {', '.join(known_audits())}")
    return _REGISTRY[name]
