"""Hostile inputs for the hostile-input trials: payloads that run code when unpickled, and JSON/YAML
built to exhaust parsers."""

import builtins
import pickle
from pathlib import Path

import torch


class Payload:
    """Unpickling this creates ``marker``: proof that a loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (builtins.open, (str(self.marker), "w"))


def plant_pickles(folder: Path, marker: Path) -> list[str]:
    """Write ``.bin`` (plain pickle) and ``.pt`` (torch.save) payloads into ``folder``; return their
    names. Checks first that the payload really runs when loaded the unsafe way."""
    probe = marker.with_suffix(".probe")
    pickle.loads(pickle.dumps(Payload(probe)))
    assert probe.exists(), "the payload must run code when unpickled"
    probe.unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": Payload(marker)}))
    torch.save({"weights": Payload(marker)}, folder / "evil.pt")
    return ["pytorch_model.bin", "evil.pt"]


def nested_json(depth: int) -> str:
    """A JSON document nested ``depth`` arrays deep."""
    return "[" * depth + "]" * depth


def nested_yaml(depth: int) -> str:
    """A policy pack whose description is nested ``depth`` flow sequences deep."""
    return f"name: deep\nchecks: []\ndescription: {'[' * depth}{']' * depth}\n"


def alias_bomb(levels: int = 12, width: int = 10) -> str:
    """A 'billion laughs' pack: each alias level repeats the one below ``width`` times."""
    lines = ["name: bomb", "checks: []", 'l0: &l0 ["lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    lines.append(f"description: *l{levels - 1}")
    return "\n".join(lines) + "\n"
