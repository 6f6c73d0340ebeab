"""The model every framework is written in: a framework's items (Requirement) in document order, and
for each what serves it: cited references, audit families, monitor-stage evidence, built-in run
evidence and system.yaml fields."""

from dataclasses import dataclass

from trustai.reports.model import Item

from trustai.core.evidence import Stage

MONITOR = "monitor"  # in ``expects``: monitor-stage evidence of any family


@dataclass(frozen=True)
class Requirement:
    """One framework item and the evidence that serves it."""

    key: str
    title: str
    asks: str
    refs: tuple[str, ...] = ()  # regulatory references (catalogue ids) whose findings serve it
    families: tuple[str, ...] = ()  # audit families whose evidence serves it by default
    monitor: bool = False  # monitor-stage evidence of any family serves it (and is shown here first)
    blocks: tuple[str, ...] = ()  # built-in run evidence (trustai.reports.blocks.BLOCKS)
    fields: tuple[str, ...] = ()  # system.yaml fields the provider supplies
    expects: tuple[str, ...] = ()  # audit families (or MONITOR) whose absence from the run is a gap

    def serves(self, item: Item) -> bool:
        """True when ``item`` is evidence for this requirement."""
        return (
            any(ref in item.references for ref in self.refs)
            or item.family in self.families
            or (self.monitor and item.stage == Stage.MONITOR.value)
        )


@dataclass(frozen=True)
class Framework:
    """A framework's items in document order; ``fallback`` hosts evidence no item claims."""

    id: str
    title: str
    intro: str
    requirements: tuple[Requirement, ...]
    fallback: str
    crosswalk: tuple[Requirement, ...] = ()  # articles tabulated against the evidence (EU AI Act)
