"""The figures the reliability suite reports: per family, trials, detected, lost and crashed."""

from dataclasses import dataclass, field

LEGEND = """\
trials    fault, tamper, kill, forgery or hostile input applied (fuzz: generated examples)
detected  caught as it must be: verify failed naming the file/record; error finding recorded; kill
          survived with the ledger verified and the run resumed and sealed; input refused cleanly;
          forgery refused by verify, ledger verify, audit or report naming what was forged
lost      evidence lost or undetected: tampering verify accepted, committed records gone after a kill,
          a fault with no finding, a file changed or a payload executed by hostile input, key leaks,
          a forgery every probe accepted
crashed   uncaught exceptions, tracebacks, hangs, and training runs that did not complete"""


@dataclass
class Figure:
    """Counters of one family of trials, plus free-text notes."""

    family: str
    trials: int = 0
    detected: int = 0
    lost: int = 0
    crashed: int = 0
    notes: list[str] = field(default_factory=list)


class Figures:
    """All families' figures of one pytest session, in the order they were first reported."""

    def __init__(self) -> None:
        self._rows: dict[str, Figure] = {}

    def row(self, family: str) -> Figure:
        """The figure of ``family``, created empty on first use."""
        return self._rows.setdefault(family, Figure(family))

    def __bool__(self) -> bool:
        return bool(self._rows)

    def render(self) -> str:
        """A plain-text table of every family, its notes, and the legend."""
        lines = [f"{'family':<14}{'trials':>8}{'detected':>10}{'lost':>6}{'crashed':>9}"]
        for f in self._rows.values():
            lines.append(f"{f.family:<14}{f.trials:>8}{f.detected:>10}{f.lost:>6}{f.crashed:>9}")
        for f in self._rows.values():
            lines += [f"  {f.family}: {note}" for note in f.notes]
        return "\n".join([*lines, "", LEGEND])


FIGURES = Figures()
