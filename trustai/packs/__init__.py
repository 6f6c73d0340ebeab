"""Policy packs: YAML that says which audits run at which stage, with which params and thresholds,
how much a violation matters, and which regulatory items it serves. ``judge`` turns Evidence into a
Finding; nothing else in trustai decides pass or fail.

Malformed packs raise TrustaiUserError naming ``file:line`` and the offending key.
"""

from trustai.packs.judging import judge
from trustai.packs.loading import load_pack, parse_pack, shipped_packs
from trustai.packs.schema import Check, PolicyPack, Threshold

__all__ = ["Check", "PolicyPack", "Threshold", "judge", "load_pack", "parse_pack", "shipped_packs"]
