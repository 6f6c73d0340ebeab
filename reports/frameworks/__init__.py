"""The structure of each regulatory framework a report follows, and what serves each of its items.

An item is served by evidence records whose finding cites one of its references (the policy pack's
``references``), by evidence of its default audit families (``robustness.*`` evidence serves
Annex IV 2(g) and Art. 15 whether or not the pack says so), by monitor-stage evidence where it is about
operation, by built-in run evidence (``blocks``), and by the provider's ``system.yaml`` fields. Missing
fields, expected audit families and built-in evidence become gaps. Items and references are those of
``trustai.packs.regulatory.REFERENCES`` and ``docs/REGULATORY.md``; none is invented here.
"""

from trustai.reports.frameworks.base import MONITOR, Framework, Requirement
from trustai.reports.frameworks.eu_ai_act import EU_AI_ACT
from trustai.reports.frameworks.iso_42001 import ISO_42001
from trustai.reports.frameworks.nist_ai_rmf import NIST_AI_RMF

from trustai.errors import TrustaiUserError

__all__ = [
    "EU_AI_ACT",
    "FRAMEWORKS",
    "ISO_42001",
    "MONITOR",
    "NIST_AI_RMF",
    "Framework",
    "Requirement",
    "get_framework",
]

FRAMEWORKS: dict[str, Framework] = {f.id: f for f in (EU_AI_ACT, NIST_AI_RMF, ISO_42001)}


def get_framework(name: str) -> Framework:
    """Return the framework called ``name``; TrustaiUserError names the known ones otherwise."""
    if name not in FRAMEWORKS:
        raise TrustaiUserError(
            f"unknown framework {name!r}", fix=f"use one of: {', '.join(sorted(FRAMEWORKS))}"
        )
    return FRAMEWORKS[name]
