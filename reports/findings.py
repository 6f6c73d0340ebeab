"""Findings and metrics in words: a finding as one sentence ("corruptions: mean action deviation 0.31
exceeded the limit 0.2 (fail, blocks release)"), an audit's error as its message, and a metric's
declared unit and meaning (``Audit.metrics``)."""

import functools
import re
import textwrap
from collections.abc import Mapping
from typing import Any

from trustai.reports.document import cell
from trustai.reports.model import Item

from trustai.core.audit import Metric, get_audit
from trustai.core.gate import BLOCKING_STATUSES
from trustai.errors import TrustaiUserError

MAX_SENTENCE = 400  # characters of a finding sentence; the evidence record keeps the whole text
# "ValueError: message" as measure_with_limit records an exception.
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): (.*)$", re.S)
_USER_ERROR = "TrustaiUserError"


def clean_error(text: object) -> str:
    """An audit's recorded error as a reader wants it: the message on one line, without the exception's
    class name (named in parentheses after it unless it is a TrustaiUserError), at most MAX_SENTENCE
    characters."""
    match = _EXCEPTION.match(str(text).strip())
    name, message = (match.group(1), match.group(2)) if match else (None, str(text))
    message = "; ".join(line.strip() for line in message.splitlines() if line.strip())
    message = message.replace("How to fix:", "how to fix:")
    if name and name.rsplit(".", 1)[-1] != _USER_ERROR:
        message += f" ({name.rsplit('.', 1)[-1]})"
    return textwrap.shorten(message, MAX_SENTENCE, placeholder=" …")


def metric_words(name: str) -> str:
    """A metric's name as words: ``mean_action_deviation`` -> ``mean action deviation``."""
    return name.replace("_", " ")


@functools.cache
def _declarations(audit: str) -> Mapping[str, Metric]:
    """The metrics ``audit`` declares; none when it is not installed here (looked up once)."""
    try:
        return get_audit(audit).metrics
    except (TrustaiUserError, ImportError):
        return {}


def declared(audit: str, metric: str) -> Metric | None:
    """The declaration of ``metric`` by ``audit`` (unit, direction, meaning), or None when the audit is
    not installed here or declares the name only through a placeholder."""
    return _declarations(audit).get(metric)


def _value(value: Any, bound: float | None) -> str:
    if value is None and bound is not None:
        return f"> {bound:g}"
    return cell(value)


def _threshold(t: dict[str, Any], exceeds: dict[str, Any]) -> str:
    """One threshold as a clause: ``faces 2 exceeded the limit 0``."""
    metric, op, limit, value = str(t.get("metric")), t.get("op"), t.get("limit"), t.get("value")
    name, bound = metric_words(metric), exceeds.get(metric)
    if t.get("held"):
        return f"{name} {_value(value, bound)} {'≥' if op == 'min' else '≤'} {cell(limit)}"
    if isinstance(value, bool):
        return f"{name}: {cell(value)}, required {'yes' if op == 'min' else 'no'}"
    if value is None and bound is None:
        return f"{name} was not measured (limit {'≥' if op == 'min' else '≤'} {cell(limit)})"
    if op == "min":
        return f"{name} {_value(value, bound)} fell below the minimum {cell(limit)}"
    return f"{name} {_value(value, bound)} exceeded the limit {cell(limit)}"


def consequence(status: str, severity: str) -> str:
    """What a finding means for release, in parentheses' words: ``fail, blocks release``."""
    if status == "warn":
        return "warning"
    if status in BLOCKING_STATUSES:
        return f"{status}, " + {"block": "blocks release", "warn": "warning"}.get(severity, "for information")
    return status


def sentence(item: Item, *, lead: bool = True) -> str:
    """The finding on ``item`` as one sentence: what was measured against which limit, or why nothing
    could be, and what it means for release; starting with the check's id unless ``lead`` is False (a
    table row that names the check already)."""
    check = f"{item.check_id}: " if lead else ""
    if item.finding is None:
        return f"{check}measured, not judged (no finding recorded)"
    f = item.finding.payload
    status, severity = str(f.get("status")), str(f.get("severity"))
    thresholds = [t for t in f.get("thresholds") or [] if isinstance(t, dict)]
    exceeds = item.payload.get("exceeds") or {}
    if status == "error":
        body = "the audit did not complete: " + clean_error(item.payload.get("error") or f.get("message"))
    elif status in ("fail", "warn"):
        body = "; ".join(_threshold(t, exceeds) for t in thresholds if not t.get("held"))
    elif status == "inconclusive":
        body = clean_error(f.get("message"))
    elif thresholds:
        shown = "; ".join(_threshold(t, exceeds) for t in thresholds[:3])
        more = f" and {len(thresholds) - 3} more" if len(thresholds) > 3 else ""
        body = f"{shown}{more} held"
    else:
        body = "measured (no thresholds)"
    text = f"{check}{body} ({consequence(status, severity)})"
    return textwrap.shorten(text if lead else text[0].upper() + text[1:], MAX_SENTENCE, placeholder=" …")
