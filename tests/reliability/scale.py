"""How many trials each reliability family runs.

``pytest tests`` runs the quick scale: small, derandomized, part of ``make test``. ``make reliability``
sets ``TRUSTAI_RELIABILITY_TRIALS=full``: many trials with a fresh random seed, printed with the
figures so a failure can be replayed with ``TRUSTAI_RELIABILITY_SEED=<seed>``.
"""

import os
import random
from dataclasses import dataclass

TRIALS_ENV = "TRUSTAI_RELIABILITY_TRIALS"
SEED_ENV = "TRUSTAI_RELIABILITY_SEED"


@dataclass(frozen=True)
class Scale:
    """Trial counts of one scale."""

    name: str
    tamper: int  # tampered copies of a governed run, each verified
    tamper_cli: int  # of those, how many also go through the `trustai verify` command line
    kills: int  # kill -9 of a governed `trustai train` process
    fault_runs: int  # governed runs with fault-injecting audits, per runtime (inline, ray)
    fuzz: int  # Hypothesis examples per fuzz target
    forgery: int  # trials of every forgery attack (quick: one attack per class instead)
    seed: int
    derandomize: bool


_COUNTS = {
    "quick": dict(tamper=60, tamper_cli=6, kills=1, fault_runs=1, fuzz=120, forgery=1),
    "full": dict(tamper=600, tamper_cli=30, kills=6, fault_runs=2, fuzz=1500, forgery=3),
}


def current_scale() -> Scale:
    """The scale named by TRUSTAI_RELIABILITY_TRIALS (quick when unset)."""
    name = os.environ.get(TRIALS_ENV, "quick")
    if name not in _COUNTS:
        raise ValueError(f"{TRIALS_ENV}={name!r}: use one of {', '.join(_COUNTS)}")
    quick = name == "quick"
    seed = os.environ.get(SEED_ENV)
    chosen = int(seed) if seed else (0 if quick else random.SystemRandom().randrange(1 << 32))
    return Scale(name=name, seed=chosen, derandomize=quick and not seed, **_COUNTS[name])


SCALE = current_scale()
