"""A governed run: one policy pack, one run folder with its ledger, and the stage events that the
training hooks or the CLI raise. ``Governance`` is the only place that connects audits, the policy
pack, the ledger and the model card; hooks and commands stay thin.

Governance is the only writer of a run's ledger (what each record holds: ``trustai.core.records``).
With a signing key it anchors the ledger (trustai.attest.anchor) whenever it seals something: after each
card, after the run's end, and when it closes, so no record outlives its stage without a signature.
Without a key the ledger stays unanchored, and verification says so.
Run folder layout: ``trustai.layout``; a stage's artifacts go to ``artifacts/<stage>-<step>-<check>/``
(``artifacts/audit-<stage seq>-<check>/`` for stages that ``trustai audit`` raised on a saved checkpoint).

With an asynchronous runtime (``process``, ``ray``) the data stage runs beside training, and the stages
raised while it runs (checkpoints, release) start once it has completed: every card is sealed after the
data stage's findings are in the ledger, and a dataset fingerprint that was still pending at start-up
(``trustai.lerobot.dataset_digests``) is, by then, the one the data stage verified.
"""

import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustai import layout
from trustai.core.canonical import digest, pretty_json
from trustai.core.evidence import Evidence, Finding, InputProvenance, Stage
from trustai.core.ledger import Ledger, Record
from trustai.core.manifest import run_manifest
from trustai.core.records import (
    AnchorRecord,
    CardRecord,
    FindingRecord,
    HookError,
    PackDigest,
    PackRecord,
    PrivacyStop,
    RecordKind,
    RunEnd,
    RunStart,
    StageEvent,
)
from trustai.core.run_record import RunLedger
from trustai.errors import TrustaiUserError
from trustai.lerobot.dataset_digests import VERIFYING_AUDIT, DatasetDigests, claim_digests
from trustai.lerobot.datasets import resolve_dataset_root
from trustai.packs import PolicyPack, judge, load_pack
from trustai.runtime.executor import AuditJob, Executor
from trustai.runtime.inline_executor import InlineExecutor

if TYPE_CHECKING:
    from trustai.attest.anchor import AnchorSigner

log = logging.getLogger("trustai")

ASYNC_STAGES = frozenset({Stage.DATA, Stage.CHECKPOINT, Stage.RELEASE, Stage.MONITOR})
RUNTIMES = ("inline", "process", "ray")
TRAINING_RUNTIME = "process"  # what `trustai train` uses unless told otherwise


class Governance:
    """Stage events of one run go through here: audits run, evidence and findings are recorded."""

    def __init__(
        self,
        run_dir: Path,
        pack: PolicyPack | str = "default",
        *,
        signing_key: Path | None = None,
        seed: int = 0,
        runtime: str = "inline",
        ray_address: str | None = None,
        ray_cpus: int | None = None,
    ):
        """``runtime="process"`` runs data, checkpoint, release and monitor checks in a pool of
        low-priority worker processes on this machine (``trustai.runtime.process_executor``);
        ``runtime="ray"`` runs them as Ray tasks (local Ray with ``ray_cpus`` CPUs started on demand, by
        default a quarter of the cores so the trainer keeps the rest, or the cluster at ``ray_address`` /
        ``RAY_ADDRESS``). Train checks, and every check with ``runtime="inline"``, run in this process."""
        if runtime not in RUNTIMES:
            raise TrustaiUserError(f"unknown runtime {runtime!r}", fix=f"use one of: {', '.join(RUNTIMES)}")
        self.run_dir = Path(run_dir)
        self.pack = pack if isinstance(pack, PolicyPack) else load_pack(pack)
        self.signing_key = Path(signing_key) if signing_key else None
        self.seed = seed
        self._ledger: Ledger | None = None
        self._signer: AnchorSigner | None = None  # loaded on the first anchor
        self._run_id: str | None = None
        self.dataset_root: Path | None = None  # the training dataset's folder, once training named it
        self.dataset_inputs = InputProvenance()
        self.inline: Executor = InlineExecutor(self.trustai_dir)
        self.executor: Executor = self.inline  # where data, checkpoint, release and monitor checks run
        # Batches submitted and not completed (their on_done included), data-stage batches among them,
        # and the launches of stages raised while a data stage was open.
        self._order = threading.Condition()
        self._open = 0
        self._data_open = 0
        self._deferred: list[Callable[[], None]] = []
        self.observers: list[Callable[[Record], None]] = []  # see _notify (experiment trackers)
        if runtime == "process":
            from trustai.runtime.process_executor import ProcessExecutor

            self.executor = ProcessExecutor(self.trustai_dir)
        elif runtime == "ray":
            from trustai.runtime.ray_executor import RayExecutor

            cpus = ray_cpus or max(1, (os.cpu_count() or 2) // 4)
            self.executor = RayExecutor(self.trustai_dir, address=ray_address, num_cpus=cpus)

    def claim_dataset(self, root: Path) -> DatasetDigests:
        """The dataset's per-file digests and fingerprint for the run manifest. Large files' digests are
        claimed without reading them (hub cache, digest cache) only when a data-stage check of the pack
        re-reads every byte (``provenance.dataset``); otherwise every file is read now."""
        fast = any(c.audit == VERIFYING_AUDIT for c in self.pack.checks_for(Stage.DATA))
        return claim_digests(root, fast=fast)

    def training_manifest(
        self, root: Path | None, name: str | None, *, train_config: dict[str, Any] | None, seed: int | None
    ) -> dict[str, Any]:
        """Name the training dataset at ``root`` (``name``: its repo id or path) and return the run manifest
        that records it, as every training hook starts a run: its per-file digests claimed
        (``claim_dataset``: large files unread when the data stage re-reads every byte), the dataset and
        its fingerprint handed to the audits (``use_dataset``), and ``run_manifest`` with the fingerprint
        (None while any digest is pending) and the digests. Without ``root`` no dataset is named."""
        digests = self.claim_dataset(Path(root)) if root is not None else None
        fingerprint = digests.fingerprint if digests else None
        self.use_dataset(root, name, fingerprint)
        return run_manifest(
            train_config=train_config,
            seed=seed,
            dataset=name,
            dataset_fingerprint=fingerprint,
            dataset_digests=digests.record() if digests else None,
        )

    def use_dataset(self, root: Path | None, name: str | None, fingerprint: str | None) -> None:
        """Name the training dataset (its folder, repo id or path, content fingerprint): data,
        checkpoint and release checks audit it, and evidence cites it as its input."""
        self.dataset_root = Path(root) if root is not None else None
        self.dataset_inputs = InputProvenance(dataset=name, dataset_fingerprint=fingerprint)

    @property
    def trustai_dir(self) -> Path:
        """The folder inside the run that holds the ledger, evidence and artifacts."""
        return layout.trustai_dir(self.run_dir)

    @property
    def ledger(self) -> Ledger:
        """The run's ledger, opened (and created) on first use."""
        if self._ledger is None:
            self._ledger = Ledger(layout.ledger_path(self.run_dir))
        return self._ledger

    def recorded(self) -> RunLedger:
        """What the run's ledger holds so far."""
        return RunLedger.read(self.ledger)

    @property
    def run_id(self) -> str | None:
        """The run's id as its ledger records it (None before the first start, and for ledgers
        written before run ids)."""
        if self._run_id is None:
            self._run_id = self.recorded().run_id
        return self._run_id

    def start(self, manifest: dict[str, Any]) -> Record:
        """Record the start of the run: the pack that governs it, the provenance manifest and the run
        id (created by the first start, the same for every resumed one)."""
        run_id = self.run_id or str(uuid.uuid4())
        pack = self.pack.model_dump(mode="json")
        recorded = PackRecord(
            name=self.pack.name,
            version=self.pack.version,
            digest=digest(pack),
            source=self.pack.source,
            checks=pack["checks"],
        )
        start = RunStart(policy_pack=recorded, manifest=manifest, run_id=run_id)
        record = self.ledger.append(RecordKind.RUN_START, start)
        self._run_id = run_id
        return record

    def run_stage(
        self,
        stage: Stage,
        *,
        step: int | None = None,
        checks: Iterable | None = None,
        on_done: Callable[[list[Finding]], None] | None = None,
        on_finding: Callable[[Finding], None] | None = None,
        trigger: str | None = None,
        dataset: Path | str | None = None,
        reference: Path | str | None = None,
        checkpoint_dir: Path | None = None,
        training: dict[str, Any] | None = None,
        manifest: dict[str, Any] | None = None,
        policy: Any = None,
        inputs: InputProvenance | None = None,
    ) -> list[Finding]:
        """Run the pack's checks for ``stage`` and record a stage event, each Evidence and each Finding.

        The audits see ``dataset`` / ``reference`` (dataset folders), ``checkpoint_dir``, ``training``
        (the training hook's statistics), ``manifest`` and an already loaded ``policy`` (inline only);
        ``inputs`` is the evidence's provenance (default: the training dataset's, at ``step``). Never
        raises for an audit's failure: it becomes an ``error`` finding. Data, checkpoint, release and
        monitor checks go to ``self.executor``; an asynchronous one returns at once (``[]``), and a
        stage raised while its data stage runs starts when that has completed. ``on_finding(finding)``
        runs as each finding is recorded and ``on_done(findings)`` when all have been. ``trigger`` names
        what raised a stage outside training (``trustai audit``): the stage event records it with the
        pack's digest, and its artifacts get folders of their own so the training-time artifacts of the
        same step stay.
        """
        pack = None
        if trigger is not None:  # a stage outside training names the pack it was judged by
            pack = PackDigest(name=self.pack.name, digest=digest(self.pack.model_dump(mode="json")))
        event = StageEvent(stage=stage, step=step, trigger=trigger, policy_pack=pack)
        record = self.ledger.append(RecordKind.STAGE, event, stage=stage.value)
        prefix = f"audit-{record.seq}" if trigger is not None else f"{stage.value}-{step or 0}"
        shared = dict(
            stage=stage,
            step=step,
            seed=self.seed,
            checkpoint_dir=str(checkpoint_dir) if checkpoint_dir is not None else None,
            dataset_root=str(resolve_dataset_root(dataset)) if dataset is not None else None,
            reference_root=str(resolve_dataset_root(reference)) if reference is not None else None,
            manifest=manifest,
            training=training,
            policy=policy,
        )
        chosen = list(checks if checks is not None else self.pack.checks_for(stage))
        findings: list[Finding] = []
        executor = self.executor if stage in ASYNC_STAGES else self.inline
        gates = stage == Stage.DATA and executor is not self.inline

        def deliver(job: AuditJob, evidence: Evidence) -> None:
            findings.append(self.record(job.check, evidence))
            if on_finding is not None:
                on_finding(findings[-1])

        def done() -> None:
            try:
                if on_done is not None:
                    on_done(findings)
            finally:
                self._completed(gates)

        def launch() -> None:
            # The inputs as they are at launch: a deferred stage cites the fingerprint its data stage
            # verified.
            cited = inputs or self.dataset_inputs.model_copy(update={"step": step})
            jobs = [
                AuditJob(check=c, artifact_name=f"{prefix}-{c.id}", inputs=cited, **shared) for c in chosen
            ]
            executor.submit(jobs, deliver, done)

        with self._order:
            self._open += 1
            self._data_open += gates
            wait = executor is not self.inline and not gates and self._data_open > 0
            if wait:
                self._deferred.append(functools.partial(self._launch_deferred, stage, launch, done))
        if not wait:
            try:
                launch()
            except BaseException:
                self._completed(gates)
                raise
        return [] if executor is not self.inline else findings

    def _completed(self, gates: bool) -> None:
        """A batch is over (its on_done ran); when it was the last open data stage, start the stages
        that waited for it."""
        with self._order:
            self._open -= 1
            self._data_open -= gates
            ready, self._deferred = (self._deferred, []) if self._data_open == 0 else ([], self._deferred)
            self._order.notify_all()
        for start in ready:
            start()

    def _launch_deferred(self, stage: Stage, launch: Callable[[], None], done: Callable[[], None]) -> None:
        try:
            launch()
        except Exception as exc:  # on the executor's thread: recorded, and the stage counts as over
            log.exception("trustai: starting the %s stage failed", stage.value)
            self.hook_error(f"{stage.value} stage", exc)
            done()

    def checkpoint_stages(self, folder: Path, step: int, *, training: dict[str, Any], **context: Any) -> None:
        """The train and checkpoint stages of a checkpoint saved at ``step``: ``training`` goes to
        the train checks, ``context`` (dataset, manifest) to both; the checkpoint's card is sealed in
        ``folder`` once its checks have landed (at once inline, as they arrive on Ray)."""
        self.run_stage(Stage.TRAIN, step=step, training=training, manifest=context.get("manifest"))
        self.run_stage(
            Stage.CHECKPOINT,
            step=step,
            checkpoint_dir=folder,
            on_done=lambda _: self.seal(folder, step=step),
            **context,
        )

    def release_stage(self, folder: Path | None, step: int | None, **context: Any) -> None:
        """The release stage of the final checkpoint ``folder``; its release card is sealed once the
        release checks have landed (no card when training saved no checkpoint)."""
        seal = (lambda _: self.seal(folder, step=step, release=True)) if folder is not None else None
        self.run_stage(Stage.RELEASE, step=step, checkpoint_dir=folder, on_done=seal, **context)

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait for asynchronous audits, and the cards they seal, at most ``timeout_s`` (default: the
        pack's ``release_wait_s``); past it, what still runs or waits is delivered as ``error`` evidence.
        True if all finished in time."""
        limit = self.pack.release_wait_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        with self._order:
            in_time = self._order.wait_for(lambda: self._open == 0, timeout=limit)
        in_time = self.executor.drain(max(0.0, deadline - time.monotonic())) and in_time
        for _ in range(2):  # stopping the data stage starts the stages that waited for it: stop those too
            with self._order:
                if self._order.wait_for(lambda: self._open == 0, timeout=30.0):
                    break
            self.executor.drain(0.0)
        return in_time

    def record(self, check: Any, evidence: Evidence) -> Finding:
        """Append one Evidence and the Finding the pack draws from it; write the evidence file."""
        ev_record = self.ledger.append(RecordKind.EVIDENCE, evidence, stage=evidence.stage.value)
        path = self.trustai_dir / layout.evidence_name(ev_record.seq, check.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(pretty_json(evidence.canonical()), encoding="utf-8")
        finding = judge(check, evidence)
        judged = FindingRecord(**finding.model_dump(), evidence_record=ev_record.cite())
        judged_record = self.ledger.append(RecordKind.FINDING, judged, stage=evidence.stage.value)
        self._adopt_verified_fingerprint(evidence)
        self._notify(ev_record, judged_record)
        if finding.status.value in ("fail", "error"):
            log.warning("trustai: %s %s: %s", check.id, finding.status.value, finding.message)
        return finding

    def _adopt_verified_fingerprint(self, evidence: Evidence) -> None:
        """A fingerprint pending at start-up becomes the one the data stage verified (every byte read,
        every claim matched), so later evidence cites it."""
        if evidence.audit != VERIFYING_AUDIT or self.dataset_inputs.dataset_fingerprint is not None:
            return
        verified = (evidence.tables.get("fingerprint") or [{}])[0].get("verified")
        if evidence.error is None and evidence.metrics.get("fingerprint_verified") is True and verified:
            self.dataset_inputs = self.dataset_inputs.model_copy(update={"dataset_fingerprint": verified})

    def seal(self, checkpoint_dir: Path, *, step: int | None, release: bool = False) -> Path:
        """Write the model card and evidence into ``checkpoint_dir`` (a pretrained_model folder), sign
        the folder when a key is set, record the card in the ledger and anchor it. Returns the card.json
        path."""
        from trustai.attest.card import checkpoint_ref, write_card
        from trustai.attest.signing import sign_folder
        from trustai.core.manifest import weights_digest

        card_path, card = write_card(
            self, Path(checkpoint_dir), step=step, release=release, dataset_check=VERIFYING_AUDIT
        )
        signature = sign_folder(Path(checkpoint_dir), self.signing_key) if self.signing_key else None
        sealed = CardRecord(
            checkpoint=checkpoint_ref(self.run_dir, Path(checkpoint_dir)),
            step=step,
            release=release,
            card_digest=digest(card),
            signed=signature is not None,
            checkpoint_digest=weights_digest(Path(checkpoint_dir)),
        )
        stage = Stage.RELEASE if release else Stage.CHECKPOINT
        card_record = self.ledger.append(RecordKind.CARD, sealed, stage=stage.value)
        self.anchor("card")
        self._notify(card_record)
        return card_path

    def _notify(self, *records: Record) -> None:
        """Hand new evidence, finding and card records to each observer, in ledger order. An observer
        that raises is recorded as a ``hook.error`` (named by its ``name``) and dropped: it never stops
        the run."""
        for observer in list(self.observers):
            try:
                for record in records:
                    observer(record)
            except Exception as exc:
                log.exception("trustai: observer %r failed; dropped, the run goes on", observer)
                if observer in self.observers:
                    self.observers.remove(observer)
                self.hook_error(str(getattr(observer, "name", type(observer).__name__)), exc)

    def anchor(self, reason: str) -> Record | None:
        """Sign the ledger's head with the signing key (an ``anchor`` record naming ``reason``), unless
        the head is already an anchor. None, anchoring nothing, without a signing key, before this
        Governance opened the ledger (it wrote nothing), or without a run id (a ledger written before
        run ids cannot be anchored)."""
        if self.signing_key is None or self._ledger is None or self.run_id is None:
            return None
        if self._signer is None:
            from trustai.attest.anchor import AnchorSigner

            self._signer = AnchorSigner(self.signing_key)
        signer, run_id = self._signer, self.run_id

        def build(head: Record | None) -> AnchorRecord | None:
            if head is None or head.kind == RecordKind.ANCHOR.value:
                return None
            return signer.anchor(run_id, head, reason)

        return self.ledger.append_on_head(RecordKind.ANCHOR, build)

    def privacy_stop(self, stop: PrivacyStop) -> Record:
        """Record that DP training stopped before a step that would exceed its privacy budget."""
        return self.ledger.append(RecordKind.PRIVACY_STOP, stop)

    def hook_error(self, hook: str, error: BaseException) -> Record:
        """Record that the training hook ``hook`` raised ``error``; training went on without it."""
        return self.ledger.append(RecordKind.HOOK_ERROR, HookError(hook=hook, error=repr(error)))

    def end(self, summary: RunEnd) -> Record:
        """Record the end of training (the release checkpoint and what the trainer reports) and anchor
        it."""
        record = self.ledger.append(RecordKind.RUN_END, summary)
        self.anchor("run.end")
        return record

    def close(self) -> None:
        """Shut the executor down, anchor whatever this session appended since the last anchor, and
        close the ledger."""
        self.executor.shutdown()
        if self._ledger is not None:
            try:
                self.anchor("session end")
            finally:
                self._ledger.close()
                self._ledger = None
