"""Policy packs: YAML that says which audits run at which stage, with which params and thresholds,
how much a violation matters, and which regulatory items it serves. ``judge`` turns Evidence into a
Finding; nothing else in trustai decides pass or fail.

Malformed packs raise TrustaiUserError naming ``file:line`` and the offending key.
"""

from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from trustai.audit import get_audit
from trustai.errors import TrustaiUserError
from trustai.evidence import Evidence, Finding, Severity, Stage, Status, ThresholdResult
from trustai.regulatory import REFERENCES

MAX_PACK_BYTES = 1 << 20
MAX_PACK_DEPTH = 32
MAX_WAIT_S = 7 * 24 * 3600.0  # a week bounds any sane wait; threads cannot wait on inf or 1e300 s

CheckId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]


class Threshold(BaseModel):
    """Bounds on one metric; both are inclusive. At least one must be set."""

    model_config = ConfigDict(extra="forbid")
    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_bound(self) -> "Threshold":
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs 'min' or 'max'")
        return self


class Check(BaseModel):
    """One check of a pack: an audit at a stage, with params, thresholds, severity and references."""

    model_config = ConfigDict(extra="forbid")
    id: CheckId
    audit: str
    stage: Stage
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    severity: Severity = Severity.WARN
    references: list[str] = Field(default_factory=list)
    timeout_s: float = Field(default=300.0, gt=0, le=MAX_WAIT_S)


class PolicyPack(BaseModel):
    """A named, versioned set of checks."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: int = 1
    description: str = ""
    checks: list[Check] = Field(default_factory=list)
    # The longest the end of training waits for audits.
    release_wait_s: float = Field(default=3600.0, gt=0, le=MAX_WAIT_S)
    source: str = Field(default="", exclude=True)

    def checks_for(self, stage: Stage) -> list[Check]:
        """Return the checks that run at ``stage``, in pack order."""
        return [c for c in self.checks if c.stage == stage]


def _line_map(node: yaml.Node) -> dict[tuple, int]:
    """Map each key path (tuple of keys / list indexes) to its 1-based line in the YAML text."""
    lines: dict[tuple, int] = {}
    seen: set[int] = set()

    def walk(n: yaml.Node, path: tuple, depth: int) -> None:
        if depth > MAX_PACK_DEPTH:
            raise TrustaiUserError(
                f"nesting deeper than {MAX_PACK_DEPTH} levels at {'.'.join(map(str, path))}"
            )
        if id(n) in seen:  # YAML aliases: walk a shared node once, not exponentially often
            return
        seen.add(id(n))
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                lines[(*path, key.value)] = key.start_mark.line + 1
                walk(value, (*path, key.value), depth + 1)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*path, i), depth + 1)

    walk(node, (), 0)
    return lines


def _dotted(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _line_of(lines: dict[tuple, int], path: tuple) -> int:
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def parse_pack(text: str, source: str) -> PolicyPack:
    """Parse and fully validate a pack from YAML text; ``source`` names the file in messages.

    Checks the schema, that every audit exists and serves the check's stage, that params fit the
    audit's Params model, that references are in the regulatory catalogue and that ids are unique.
    """
    if len(text.encode()) > MAX_PACK_BYTES:
        raise TrustaiUserError(f"policy pack is larger than {MAX_PACK_BYTES} bytes", where=source)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise TrustaiUserError(f"not valid YAML: {getattr(exc, 'problem', exc)}", where=where) from None
    except RecursionError:
        raise TrustaiUserError("YAML nested too deeply", where=source) from None
    if node is None or not isinstance(data, dict):
        raise TrustaiUserError("a policy pack must be a YAML mapping with 'name' and 'checks'", where=source)
    lines = _line_map(node)

    def fail(path: tuple, what: str, fix: str | None = None) -> TrustaiUserError:
        key = _dotted(path) or "(top level)"
        return TrustaiUserError(f"{key}: {what}", where=f"{source}:{_line_of(lines, path)}", fix=fix)

    try:
        pack = PolicyPack.model_validate({**data, "source": source})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise fail(tuple(err["loc"]), err["msg"], fix="see policies/default.yaml for the schema") from None

    seen_ids: set[str] = set()
    for i, check in enumerate(pack.checks):
        here = ("checks", i)
        if check.id in seen_ids:
            raise fail((*here, "id"), f"duplicate check id {check.id!r}")
        seen_ids.add(check.id)
        try:
            audit = get_audit(check.audit)
        except TrustaiUserError as exc:
            raise fail((*here, "audit"), exc.what, fix=exc.fix) from None
        if check.stage not in audit.stages:
            stages = ", ".join(sorted(audit.stages))
            raise fail(
                (*here, "stage"),
                f"audit {check.audit} does not run at stage {check.stage}",
                fix=f"use one of: {stages}",
            )
        try:
            audit.Params.model_validate(check.params)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise fail((*here, "params", *err["loc"]), err["msg"]) from None
        for j, ref in enumerate(check.references):
            if ref not in REFERENCES:
                raise fail(
                    (*here, "references", j),
                    f"unknown regulatory reference {ref!r}",
                    fix="use an id from trustai.regulatory.REFERENCES (e.g. eu-ai-act:art15)",
                )
    return pack


def shipped_packs() -> list[str]:
    """Return the names of the policy packs shipped with trustai."""
    folder = resources.files("trustai.policies")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_pack(name_or_path: str | Path) -> PolicyPack:
    """Load a pack from a YAML file path, or by the name of a shipped pack (``default``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise TrustaiUserError(
                "policy pack file not found",
                where=str(path),
                fix="pass an existing YAML file or a shipped pack name",
            )
        return parse_pack(path.read_text(encoding="utf-8"), str(path))
    name = str(name_or_path)
    resource = resources.files("trustai.policies") / f"{name}.yaml"
    if not resource.is_file():
        raise TrustaiUserError(
            f"no policy pack named {name!r}",
            fix=f"use a YAML file path or one of: {', '.join(shipped_packs())}",
        )
    return parse_pack(resource.read_text(encoding="utf-8"), f"policies/{name}.yaml")


def _judge_one(metric: str, op: str, limit: float, value: Any) -> ThresholdResult:
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if isinstance(value, bool):
        number = int(value)
    held = number is not None and number == number and (number >= limit if op == "min" else number <= limit)
    return ThresholdResult(metric=metric, op=op, limit=limit, value=value, held=held)


def judge(check: Check, evidence: Evidence) -> Finding:
    """Compare evidence with the check's thresholds and return the Finding.

    Audit error -> ``error``; a missing or non-numeric metric counts as violated; any violation is
    ``fail`` for ``block`` checks and ``warn`` otherwise; all thresholds held -> ``pass``.
    """
    base = dict(
        check_id=check.id,
        audit=check.audit,
        stage=check.stage,
        severity=check.severity,
        references=check.references,
        evidence_digest=evidence.digest(),
    )
    if evidence.error is not None:
        return Finding(**base, status=Status.ERROR, message=f"audit did not complete: {evidence.error}")
    results = [
        _judge_one(metric, op, limit, evidence.metrics.get(metric))
        for metric, threshold in check.thresholds.items()
        for op, limit in (("min", threshold.min), ("max", threshold.max))
        if limit is not None
    ]
    broken = [r for r in results if not r.held]
    if not broken:
        return Finding(
            **base,
            status=Status.PASS,
            thresholds=results,
            message=f"{len(results)} threshold(s) held" if results else "measured (no thresholds)",
        )
    status = Status.FAIL if check.severity == Severity.BLOCK else Status.WARN
    what = "; ".join(f"{r.metric}={r.value} violates {r.op} {r.limit}" for r in broken)
    return Finding(**base, status=status, thresholds=results, message=what)
