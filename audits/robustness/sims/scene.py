"""Scene changes of the closed-loop audit, after LIBERO-Plus: camera viewpoint, lighting and object
position change the simulated world (each simulator applies them at reset); instruction paraphrases
change what a language-conditioned policy is told. Five severities each, like the sensor corruptions.

A change draws its random parts (directions, which paraphrase) from a generator seeded per change and
episode, not per severity, so the severities of one change differ only in strength.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class SceneChange:
    """A scene change: its level at severities 1..5, the level's unit, and what it does."""

    name: str
    levels: tuple[float, float, float, float, float]
    unit: str
    meaning: str


SCENE_CHANGES: dict[str, SceneChange] = {
    change.name: change
    for change in (
        SceneChange(
            "camera_viewpoint",
            (0.02, 0.04, 0.06, 0.08, 0.10),
            "m",
            "each camera the policy reads moves this far in a random direction (a camera aimed at a "
            "body stays aimed at it)",
        ),
        SceneChange(
            "lighting",
            (0.8, 0.6, 0.45, 0.3, 0.15),
            "× light",
            "every light of the scene (and the ambient headlight) dims to this fraction",
        ),
        SceneChange(
            "object_position",
            (0.01, 0.02, 0.03, 0.04, 0.05),
            "m",
            "each task object starts this far from its sampled position, in a random horizontal direction",
        ),
        SceneChange(
            "instruction",
            (1, 2, 3, 4, 5),
            "paraphrase rung",
            "the language instruction is paraphrased: politeness, synonyms, a rewording, a distracting "
            "context, then an instruction that names no object",
        ),
    )
}
WORLD_CHANGES = frozenset(SCENE_CHANGES) - {"instruction"}


def scene_change(name: str) -> SceneChange:
    """The scene change called ``name``; ValueError naming the known ones otherwise."""
    if name not in SCENE_CHANGES:
        raise ValueError(f"unknown scene change {name!r}; known: {sorted(SCENE_CHANGES)}")
    return SCENE_CHANGES[name]
