"""Reading policy packs: parse and fully validate YAML text, find the packs shipped with trustai, and
load a pack by file path or shipped name. Malformed packs raise TrustaiUserError naming ``file:line``
and the offending key."""

from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trustai.core.audit import get_audit
from trustai.errors import TrustaiUserError
from trustai.packs.regulatory import REFERENCES
from trustai.packs.schema import PolicyPack
from trustai.packs.yaml_lines import KeyPath, dotted, line_map, line_of, read_yaml

MAX_PACK_BYTES = 1 << 20
# Packs are recorded as canonical JSON (RFC 8785), whose numbers are IEEE doubles: a whole number
# beyond this cannot be written exactly, so the run start could not digest the pack.
MAX_SAFE_INTEGER = 2**53 - 1


def _undigestable(value: Any, path: KeyPath = ()) -> tuple[KeyPath, str, str] | None:
    """The first value in ``value`` that canonical JSON cannot write: (path, what, fix); None when
    every value can be written."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INTEGER:
        what = f"{value} is outside the whole numbers canonical JSON can hold (±{MAX_SAFE_INTEGER})"
        return path, what, "write a number between -(2**53 - 1) and 2**53 - 1, or quote it as text"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path, "text holds a lone surrogate (an escape in \\ud800-\\udfff)", "remove the escape"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _undigestable(key, path) if isinstance(key, str) else None
        found = found or _undigestable(item, (*path, key))
        if found:
            return found
    return None


def parse_pack(text: str, source: str) -> PolicyPack:
    """Parse and fully validate a pack from YAML text; ``source`` names the file in messages.

    Checks the schema, that every audit exists and serves the check's stage, that params fit the
    audit's Params model, that every threshold is on a metric the audit declares, that references are
    in the regulatory catalogue and that ids are unique.
    """
    if len(text.encode()) > MAX_PACK_BYTES:
        raise TrustaiUserError(f"policy pack is larger than {MAX_PACK_BYTES} bytes", where=source)
    node, data = read_yaml(text, source)
    if node is None or not isinstance(data, dict):
        raise TrustaiUserError("a policy pack must be a YAML mapping with 'name' and 'checks'", where=source)
    lines = line_map(node)

    def fail(path: KeyPath, what: str, fix: str | None = None) -> TrustaiUserError:
        key = dotted(path) or "(top level)"
        return TrustaiUserError(f"{key}: {what}", where=f"{source}:{line_of(lines, path)}", fix=fix)

    try:
        pack = PolicyPack.model_validate({**data, "source": source})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise fail(tuple(err["loc"]), err["msg"], fix="see policies/default.yaml for the schema") from None

    # A pack that validates is one the run start can digest: every value fits canonical JSON, both as
    # written (a whole number the schema would round to a float) and as validated (a float it made whole).
    for values in (data, pack.model_dump(mode="json")):
        undigestable = _undigestable(values)
        if undigestable:
            path, what, fix = undigestable
            raise fail(path, what, fix=fix)

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
        for metric in check.thresholds:
            if not audit.declares(metric):
                raise fail(
                    (*here, "thresholds", metric),
                    f"audit {check.audit} has no metric {metric!r}",
                    fix=f"use one of: {', '.join(sorted(audit.metrics)) or '(it declares none)'}",
                )
        for j, ref in enumerate(check.references):
            if ref not in REFERENCES:
                raise fail(
                    (*here, "references", j),
                    f"unknown regulatory reference {ref!r}",
                    fix="use an id from trustai.packs.regulatory.REFERENCES (e.g. eu-ai-act:art15)",
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
