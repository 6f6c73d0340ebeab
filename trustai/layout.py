"""Where trustai keeps things on disk: the one place that spells out a run folder and a checkpoint.

A governed run is LeRobot's output folder with trustai's own folder inside::

    <run>/trustai/ledger.sqlite                     the hash-chained ledger
    <run>/trustai/evidence/<seq>-<check>.json       each evidence record, as a file
    <run>/trustai/artifacts/<name>/...              files the audits produced (PNG, HTML, JSON)
    <run>/checkpoints/<step>/pretrained_model/      LeRobot's checkpoints (``last`` links the newest)

A sealed checkpoint carries its card and copies of the evidence it cites in the same shape::

    pretrained_model/trustai/card.json
    pretrained_model/trustai/evidence/<seq>-<check>.json
    pretrained_model/trustai/artifacts/<name>/...

This module sits at the bottom layer: it imports only the standard library and ``trustai.errors``.
"""

from pathlib import Path

from trustai.errors import TrustaiUserError

TRUSTAI_DIR = "trustai"  # inside a run folder, and inside a sealed checkpoint's model folder
LEDGER_NAME = "ledger.sqlite"
EVIDENCE_DIR = "evidence"
ARTIFACTS_DIR = "artifacts"
CHECKPOINTS_DIR = "checkpoints"
MODEL_DIR = "pretrained_model"
CARD_NAME = "card.json"
RUN_LEDGER = f"{TRUSTAI_DIR}/{LEDGER_NAME}"  # the ledger, relative to its run folder (for messages)
MODEL_CARD = f"{TRUSTAI_DIR}/{CARD_NAME}"  # the card, relative to its model folder (for messages)


def trustai_dir(run_dir: Path) -> Path:
    """The folder inside ``run_dir`` that holds the ledger, evidence files and artifacts."""
    return Path(run_dir) / TRUSTAI_DIR


def ledger_path(run_dir: Path) -> Path:
    """The ledger file of the run in ``run_dir``."""
    return trustai_dir(run_dir) / LEDGER_NAME


def run_dir_of(ledger: Path) -> Path:
    """The run folder a ledger file belongs to (the inverse of ``ledger_path``)."""
    return Path(ledger).parent.parent


def evidence_name(seq: int, check_id: str) -> str:
    """The evidence file of ledger record ``seq`` relative to a trustai folder (a run's or a card's):
    ``evidence/000012-check.json``."""
    return f"{EVIDENCE_DIR}/{seq:06d}-{check_id}.json"


def artifact_dir(root: Path, name: str) -> Path:
    """The folder that receives the files of the audit job ``name`` under ``root`` (a run's trustai
    folder, or a worker's stand-in for it)."""
    return Path(root) / ARTIFACTS_DIR / name


def checkpoint_models(run_dir: Path) -> list[Path]:
    """The model folders of a run's step checkpoints (``checkpoints/<step>/pretrained_model``) in step
    order; the ``last`` link and any other link are skipped."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    return sorted(
        p / MODEL_DIR
        for p in root.iterdir()
        if p.name.isdigit() and not p.is_symlink() and (p / MODEL_DIR).is_dir()
    )


def model_folder(path: Path) -> Path:
    """The model folder of a checkpoint: ``path`` itself, or its ``pretrained_model`` when it has one.

    Raises TrustaiUserError when ``path`` does not exist or is not a folder.
    """
    path = Path(path)
    fix = "pass a LeRobot checkpoint folder (e.g. <run>/checkpoints/last) or its pretrained_model/ folder"
    if not path.exists():
        raise TrustaiUserError("checkpoint folder not found", where=str(path), fix=fix)
    if (path / MODEL_DIR).is_dir():
        return path / MODEL_DIR
    if path.is_dir():
        return path
    raise TrustaiUserError("not a folder", where=str(path), fix=fix)


def checkpoint_name(model: Path) -> str:
    """The checkpoint's folder name as LeRobot wrote it (``000004``) for a model folder."""
    model = Path(model)
    return model.parent.name if model.name == MODEL_DIR else model.name


def checkpoint_step(model: Path) -> int | None:
    """The training step a model folder's checkpoint name states, or None when it states none."""
    name = checkpoint_name(model)
    return int(name) if name.isdigit() else None


def card_dir(model: Path) -> Path:
    """The folder inside a model folder that holds its card and the evidence the card cites."""
    return Path(model) / TRUSTAI_DIR


def card_path(model: Path) -> Path:
    """The card.json of a model folder."""
    return card_dir(model) / CARD_NAME


def find_ledger(start: Path) -> Path | None:
    """The ledger of the run governing ``start`` (a run folder, checkpoint or file inside one): the
    nearest ``trustai/ledger.sqlite`` in ``start`` or a folder above it; None when there is none."""
    start = Path(start).resolve()
    for folder in [start, *start.parents]:
        candidate = ledger_path(folder)
        if candidate.is_file():
            return candidate
    return None


def require_ledger(start: Path, fix: str) -> Path:
    """``find_ledger(start)``, or TrustaiUserError (what, where, ``fix``) when no ledger governs it."""
    found = find_ledger(start)
    if found is None:
        raise TrustaiUserError("no trustai ledger found", where=str(start), fix=fix)
    return found
