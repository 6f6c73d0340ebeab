"""Hostile inputs for the hostile-input trials: payloads that run code when unpickled, and JSON/YAML
built to exhaust parsers."""

import builtins
import os
import pickle
import resource
import subprocess
from pathlib import Path

import torch

from tests.reliability.runs import BIN, QUIET_ENV


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


def cameras_pack(cameras: list[str]) -> str:
    """A pack with one adversarial check whose ``cameras`` param lists ``cameras`` (YAML flow items)."""
    return (
        "name: cameras\nchecks:\n  - id: adversarial\n    audit: robustness.adversarial\n"
        f"    stage: checkpoint\n    params:\n      cameras: [{', '.join(cameras)}]\n"
    )


def alias_flood(aliases: int = 100_000, anchor_bytes: int = 8_000) -> str:
    """A pack valid once expanded: one camera name anchored and aliased ``aliases`` times, some 400 KB
    of YAML that stands for ``aliases * anchor_bytes`` bytes (800 MB) once copied or dumped."""
    return cameras_pack([f'&c "{"x" * anchor_bytes}"', *["*c"] * aliases])


# Importing torch maps some 3.5 GiB of address space (CUDA libraries): under this cap a command has
# well under a gigabyte to work with, so expanding a hostile input fails at once instead of swapping.
ADDRESS_SPACE_CAP = 4 << 30


def _cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))


def trustai_capped(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    """`trustai` with its address space capped at ADDRESS_SPACE_CAP; output captured as text."""
    return subprocess.run(
        [BIN / "trustai", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **QUIET_ENV},
        preexec_fn=_cap_address_space,
    )


def sparse_file(path: Path, size: int) -> Path:
    """A file of ``size`` zero bytes that takes no disk space (reading it still costs ``size``)."""
    with path.open("wb") as f:
        f.truncate(size)
    return path
