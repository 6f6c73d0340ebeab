"""Paraphrases of a task instruction at five rungs (the ``instruction`` scene change), deterministic
for a given generator: what a language-conditioned policy should still follow at the low rungs."""

import re

import numpy as np

# Whole-word verb phrases of robot-task instructions and what they may be replaced with.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "pick up": ("grab", "lift"),
    "put": ("place", "set"),
    "place": ("put", "set"),
    "push": ("shove", "slide"),
    "open": ("pull open",),
    "close": ("shut",),
    "turn on": ("switch on",),
    "turn off": ("switch off",),
    "insert": ("fit",),
    "transfer": ("hand over", "pass"),
    "move": ("shift",),
    "stack": ("pile",),
}
_CONTEXT = (
    "The table is cluttered and the light may be poor. ",
    "Ignore anything that is not part of the task. ",
    "Take your time and be careful. ",
)
_VAGUE = ("Do the task.", "Tidy up the scene.", "Complete the job on the table.")


def _with_synonyms(text: str, rng: np.random.Generator) -> str:
    for phrase, options in _SYNONYMS.items():
        pattern = re.compile(rf"\b{re.escape(phrase)}\b", re.IGNORECASE)
        if pattern.search(text):
            text = pattern.sub(str(options[int(rng.integers(len(options)))]), text, count=1)
    return text


def paraphrase(instruction: str, rung: int, rng: np.random.Generator) -> str:
    """``instruction`` reworded at ``rung`` 1..5: 1 polite, 2 verbs replaced by synonyms, 3 reworded as
    a goal statement, 4 with a distracting context, 5 an instruction that names no object."""
    core = instruction.strip().rstrip(".")
    lowered = core[:1].lower() + core[1:]
    if rung == 1:
        return f"Please {lowered}."
    if rung == 5:
        return str(_VAGUE[int(rng.integers(len(_VAGUE)))])
    swapped = _with_synonyms(lowered, rng)
    if rung == 2:
        return f"{swapped[:1].upper()}{swapped[1:]}."
    if rung == 3:
        return f"Your goal: {swapped}."
    return f"{_CONTEXT[int(rng.integers(len(_CONTEXT)))]}Your goal: {swapped}."
