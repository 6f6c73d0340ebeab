"""Governance for Ray Train: a ``ray.train.UserCallback`` that audits and cards every checkpoint
reported through ``ray.train.report``.

The callback runs on Ray Train's controller, never on the training workers, so the workers' steps
are untouched. It opens the run's ledger lazily in whichever process it runs in (the controller, or
the driver for ``seal_release``). Checkpoints must live on a local or shared filesystem path, since
the card and signature are written into the checkpoint folder itself. The dataset's fingerprint is
claimed as in the LeRobot hook (``Governance.training_manifest``): start-up reads a number of files, not
their bytes, and the data stage verifies every byte.

    trainer = TorchTrainer(loop, run_config=RunConfig(storage_path=..., callbacks=[governance]))
    result = trainer.fit()
    governance.seal_release(result)
"""

import logging
import math
from pathlib import Path
from typing import Any

import ray.train

from trustai import layout
from trustai.core.evidence import Stage
from trustai.core.records import RecordKind, RunEnd
from trustai.governance import Governance

log = logging.getLogger("trustai")


class GovernanceCallback(ray.train.UserCallback):
    """Audits each reported checkpoint with the pack's train and checkpoint checks, then seals it.

    ``model_subdir`` names the folder inside a Ray checkpoint that holds the model (LeRobot's
    ``save_pretrained`` output); the checkpoint root is used when it is absent. Workers report a
    ``loss`` metric (and optionally ``step``) for train.health.
    """

    def __init__(
        self,
        run_dir: Path,
        pack: str = "default",
        *,
        signing_key: Path | None = None,
        dataset_root: Path | None = None,
        seed: int = 0,
        model_subdir: str = layout.MODEL_DIR,
    ):
        self.run_dir, self.pack, self.signing_key = Path(run_dir), pack, signing_key
        self.dataset_root, self.seed, self.model_subdir = dataset_root, seed, model_subdir
        self._gov: Governance | None = None
        self._losses: list[tuple[int, float]] = []
        self._last: tuple[Path, int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_gov": None}  # a ledger connection never travels between processes

    def _governance(self) -> Governance:
        if self._gov is None:
            self._gov = Governance(self.run_dir, self.pack, signing_key=self.signing_key, seed=self.seed)
            # Digests claimed per file, as the LeRobot hook does: large files stay unread until the data
            # stage's provenance.dataset check re-reads every byte.
            self.manifest = self._gov.training_manifest(
                self.dataset_root,
                str(self.dataset_root) if self.dataset_root else None,
                train_config={"trainer": "ray.train.TorchTrainer"},
                seed=self.seed,
            )
            if not self._gov.ledger.records(RecordKind.RUN_START):
                self._gov.start(self.manifest)
                if self.dataset_root:
                    self._gov.run_stage(
                        Stage.DATA, step=0, dataset=self._gov.dataset_root, manifest=self.manifest
                    )
        return self._gov

    def _summary(self) -> dict[str, Any]:
        nonfinite = sum(not math.isfinite(v) for _, v in self._losses)
        return {
            "steps": self._losses[-1][0] if self._losses else 0,
            "nonfinite_loss_steps": nonfinite,
            "nonfinite_grad_steps": 0,
            "grad_norm_max": 0.0,
            "ranks": [],
            "loss_history": list(self._losses),
        }

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        """Record the reported loss; for a checkpoint, run train and checkpoint checks and seal it."""
        try:
            step = int(metrics[0].get("step", len(self._losses) + 1)) if metrics else len(self._losses) + 1
            losses = [float(m["loss"]) for m in metrics if "loss" in m]
            if losses:
                self._losses.append((step, sum(losses) / len(losses)))
            if checkpoint is None:
                return
            root = Path(checkpoint.path)
            if not root.is_dir():
                raise RuntimeError(f"checkpoint {checkpoint.path} is not on a local or shared filesystem")
            folder = root / self.model_subdir if (root / self.model_subdir).is_dir() else root
            gov = self._governance()
            gov.checkpoint_stages(
                folder, step, training=self._summary(), dataset=self.dataset_root, manifest=self.manifest
            )
            self._last = (folder, step)
        except Exception as exc:  # governance must never stop training
            log.exception("trustai: governing a Ray Train report failed")
            if self._gov is not None:
                self._gov.hook_error("after_report", exc)

    def seal_release(self, result: Any) -> Path | None:
        """After ``trainer.fit()``: run the release checks on the result's last checkpoint and seal its
        release card. Returns the card path (None when the run reported no checkpoint)."""
        if result.checkpoint is None:
            return None
        root = Path(result.checkpoint.path)
        folder = root / self.model_subdir if (root / self.model_subdir).is_dir() else root
        gov = self._governance()
        card = gov.ledger.records(RecordKind.CARD)
        step = card[-1].payload["step"] if card else None
        gov.release_stage(folder, step, dataset=self.dataset_root, manifest=self.manifest)
        gov.end(RunEnd(trainer="ray.train.TorchTrainer", release_checkpoint=str(folder)))
        gov.close()
        self._gov = None
        return layout.card_path(folder)
