"""Governance inside LeRobot's own trainer: an ``accelerate.Accelerator`` subclass handed to
``lerobot.scripts.lerobot_train.train(cfg, accelerator=...)``. Nothing else in the user's code changes.

- ``prepare`` sees the dataloader: it records the run manifest, with the dataset's fingerprint made in
  time that grows with its number of files, not bytes (trustai.lerobot.dataset_digests), and starts
  the data stage on the dataset; with the default runtime (``process``) that stage runs beside the
  training loop and its findings land before the first card is sealed.
- ``backward`` / ``clip_grad_norm_`` see every step: loss and grad norm are kept on device (no sync).
- ``wait_for_everyone`` follows every LeRobot checkpoint: new ``checkpoints/<step>/pretrained_model``
  folders get the train and checkpoint stages, then a signed card.
- ``end_training``: the release stage, and the last checkpoint's card is sealed as the release card.

Governance runs on the main process only, and any exception inside it is logged and recorded in the
ledger; it never propagates into the training loop. The one deliberate exception is DP training
(trustai.training_hooks.privacy, for packs with a ``privacy.dp`` check): ``prepare`` raises
TrustaiUserError when the policy cannot be made private, and ``backward`` raises
PrivacyBudgetExhausted, after sealing a final checkpoint, before a step that would exceed the budget.
"""

import functools
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from torch.utils.data import DataLoader
from trustai.training_hooks.health import TrainingHealth
from trustai.training_hooks.privacy import PrivateTraining, make_private

from trustai import layout
from trustai.core.evidence import Stage
from trustai.core.records import RecordKind, RunEnd
from trustai.governance import Governance

log = logging.getLogger("trustai")


def _never_raise(method: Callable) -> Callable:
    """Run a governance step; on any exception, log and record it instead of raising. The time spent
    is added to ``blocked_s``: how long the training loop waited on trustai."""

    @functools.wraps(method)
    def guarded(self: "GovernedAccelerator", *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # governance must never stop training
            log.exception("trustai: %s failed; training continues", method.__name__)
            try:
                if self.is_main_process:  # only the main process writes the ledger
                    self.governance.hook_error(method.__name__, exc)
            except Exception:
                log.exception("trustai: could not record the hook error")
            return None
        finally:
            self.blocked_s += time.perf_counter() - t0

    return guarded


def config_dict(train_config: Any) -> dict[str, Any] | None:
    """``train_config`` (LeRobot's TrainPipelineConfig, or a dict) as a JSON-safe dict; None stays None."""
    if train_config is None:
        return None
    raw = train_config if isinstance(train_config, dict) else train_config.to_dict()
    return json.loads(json.dumps(raw, default=str))


class GovernedAccelerator(Accelerator):
    """An Accelerator that raises trustai stage events from LeRobot's training loop.

    ``governance`` owns the run folder (LeRobot's ``output_dir``), policy pack and signing key;
    ``train_config`` (the TrainPipelineConfig handed to LeRobot's ``train``, or its dict) is recorded
    in the run manifest, and its ``seed`` is the run's seed: the manifest records it (None when LeRobot
    trains unseeded) and the audits use it, whatever seed ``governance`` was created with. Other
    arguments go to Accelerator.
    """

    def __init__(self, *args: Any, governance: Governance, train_config: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._govern(governance, train_config)

    @classmethod
    def adopt(
        cls, accelerator: Accelerator, *, governance: Governance, train_config: Any = None
    ) -> "GovernedAccelerator":
        """Turn an Accelerator someone else built (LeRobot's ``make_accelerator`` factory) into a
        GovernedAccelerator in place, keeping every setting it was built with (FSDP plugin, device mesh,
        process group, DDP and gradient-accumulation handlers); returns the same object."""
        if not isinstance(accelerator, Accelerator):
            raise TypeError(f"expected an accelerate.Accelerator, got {type(accelerator).__name__}")
        # The subclass adds behaviour and per-run attributes only, so re-classing the built object is
        # exactly what constructing it as a GovernedAccelerator with the same arguments would give.
        accelerator.__class__ = cls
        accelerator._govern(governance, train_config)
        return accelerator

    def _govern(self, governance: Governance, train_config: Any) -> None:
        self.governance = governance
        self.train_config = config_dict(train_config)
        # The seed LeRobot's train() seeds with is the config's: taking it from there means the record
        # cannot disagree with the run.
        self.run_seed = governance.seed if self.train_config is None else self.train_config.get("seed")
        if isinstance(self.run_seed, int):
            governance.seed = self.run_seed
        self.health = TrainingHealth()
        self.privacy: PrivateTraining | None = None  # DP-SGD, when the pack has a privacy.dp check
        self.blocked_s = 0.0  # wall time spent inside trustai code, per phase below
        self.setup_s = 0.0  # before the loop: data stage and manifest (in prepare)
        self.blocked_loop_s = 0.0  # inside the training loop: what the steps waited on trustai
        self._started = False
        self._sealed: set[Path] = set()
        self._last_checkpoint: tuple[Path, int] | None = None
        self._background: ThreadPoolExecutor | None = None  # barrier work, with an asynchronous runtime

    # -- training-loop hooks -------------------------------------------------------------------------
    def prepare(self, *args: Any, device_placement: Any = None) -> Any:
        """Accelerator.prepare, then the data stage on the first dataloader's dataset. With a privacy.dp
        check in the pack, the policy, optimizer and dataloader are made private first (raises
        TrustaiUserError when they cannot be, before anything is wrapped)."""
        private = None
        if not self._started and self.privacy is None:
            private, args = make_private(self, args)
        prepared = super().prepare(*args, device_placement=device_placement)
        if private is not None:
            private.attach(prepared)
            self.privacy, self.health = private, private.health
        if self.is_main_process and not self._started:
            self._on_prepare(args)
            self.setup_s, self.blocked_s = self.blocked_s, 0.0
        return prepared

    def backward(self, loss: Any, **kwargs: Any) -> None:
        """Accelerator.backward, then keep the loss for train.health (device tensor, no sync). With DP,
        first stops training cleanly when this step would exceed the privacy budget."""
        if self.privacy is not None:
            self.privacy.before_backward(self)
        super().backward(loss, **kwargs)
        t0 = time.perf_counter()
        self.health.observe_loss(loss)
        self.blocked_s += time.perf_counter() - t0

    def clip_grad_norm_(self, parameters: Any, max_norm: float, norm_type: float = 2) -> Any:
        """Accelerator.clip_grad_norm_, then keep the total norm for train.health (no sync)."""
        norm = super().clip_grad_norm_(parameters, max_norm, norm_type=norm_type)
        t0 = time.perf_counter()
        if norm is not None:
            self.health.observe_grad_norm(norm)
        self.blocked_s += time.perf_counter() - t0
        return norm

    def wait_for_everyone(self) -> None:
        """Every rank folds its health counters into the main process's view (a collective only at
        LeRobot's own barriers, never per step), then the barrier; then the main process seals any
        checkpoint LeRobot has just written."""
        if self.num_processes > 1:
            # Before the barrier, not after: gloo drops the gather's tensors on a worker thread that
            # needs the GIL, which the barrier's wait releases. Left to the process group's teardown,
            # that drop deadlocks against the destructor holding the GIL (pytorch/pytorch#56297).
            self._reduce_health()
        super().wait_for_everyone()
        if self.is_main_process and self._started:
            self._on_barrier()

    def end_training(self) -> None:
        """Release stage and release card on the last checkpoint, then Accelerator.end_training."""
        self.blocked_loop_s = self.blocked_s
        if self.is_main_process and self._started:
            self._on_end()
        super().end_training()

    # -- governance, never raising -------------------------------------------------------------------
    @_never_raise
    def _on_prepare(self, args: tuple) -> None:
        loader = next((a for a in args if isinstance(a, DataLoader)), None)
        dataset = getattr(loader, "dataset", None)
        root = getattr(dataset, "root", None)
        repo_id = getattr(dataset, "repo_id", None)
        gov = self.governance
        # Digests claimed per file (large files unread when the data stage re-reads every byte later).
        name = repo_id or (str(root) if root else None)
        self.manifest = gov.training_manifest(root, name, train_config=self.train_config, seed=self.run_seed)
        self._sealed = self._sealed_before()
        sealed = [p for p in self._checkpoints() if p.resolve() in self._sealed]
        if sealed:  # a resumed run: its release card goes on the newest sealed checkpoint at the latest
            self._last_checkpoint = (sealed[-1], int(sealed[-1].parent.name))
        previous = gov.ledger.head()
        if previous is not None:
            self.manifest["resume"] = {
                "after_record": previous.cite(),
                "sealed_steps": [int(p.parent.name) for p in sealed],
            }
        gov.start(self.manifest)
        self._started = True
        gov.run_stage(Stage.DATA, step=0, dataset=gov.dataset_root, manifest=self.manifest)

    @_never_raise
    def _reduce_health(self) -> None:
        self.health.reduce_across_ranks(self)

    def _checkpoints(self) -> list[Path]:
        return layout.checkpoint_models(self.governance.run_dir)

    def _sealed_before(self) -> set[Path]:
        """Checkpoints an earlier run into this folder sealed. The ledger's card record is the commit
        point (written after the card and the signature), so a seal cut short by a crash is redone."""
        run = self.governance.run_dir.resolve()
        return {
            (run / r.payload["checkpoint"]).resolve()
            for r in self.governance.ledger.records(RecordKind.CARD)
            if not r.payload.get("release") and isinstance(r.payload.get("checkpoint"), str)
        }

    @_never_raise
    def _on_barrier(self) -> None:
        for folder in self._checkpoints():
            if folder.resolve() in self._sealed:
                continue
            step = int(folder.parent.name)
            self._audit_checkpoint(folder, step)
            self._sealed.add(folder.resolve())
            self._last_checkpoint = (folder, step)

    def _audit_checkpoint(self, folder: Path, step: int) -> None:
        """The checkpoint's stages; with an asynchronous runtime their recording (ledger writes, each
        synced to disk) happens on one background thread, in order, and the loop only collects the
        health statistics. DP training keeps it on the loop: its budget stop is recorded in order."""
        gov = self.governance
        stages = functools.partial(
            gov.checkpoint_stages,
            folder,
            step,
            training=self.health.summary(),
            dataset=gov.dataset_root,
            manifest=self.manifest,
        )
        if gov.executor is gov.inline or self.privacy is not None:
            stages()
            return
        if self._background is None:
            self._background = ThreadPoolExecutor(1, thread_name_prefix="trustai-governance")
        self._background.submit(self._in_background, stages)

    def _in_background(self, stages: Callable[[], None]) -> None:
        try:
            stages()
        except Exception as exc:  # governance must never stop training
            log.exception("trustai: recording a checkpoint's stages failed; training continues")
            self.governance.hook_error("_audit_checkpoint", exc)

    @_never_raise
    def _on_end(self) -> None:
        t0 = time.perf_counter()
        gov = self.governance
        if self._background is not None:  # the checkpoints' stages are recorded before the release's
            self._background.shutdown(wait=True)
        finished = gov.drain()
        folder, step = self._last_checkpoint or (None, self.health.steps)
        gov.release_stage(folder, step, dataset=gov.dataset_root, manifest=self.manifest)
        finished = gov.drain() and finished
        gov.end(
            RunEnd(
                steps=self.health.steps,
                release_checkpoint=str(folder) if folder else None,
                ranks=self.num_processes,
                audits_finished_in_time=finished,
                setup_s=round(self.setup_s, 6),
                loop_blocked_s=round(self.blocked_loop_s, 6),
                release_wait_s=round(time.perf_counter() - t0, 6),
            )
        )
