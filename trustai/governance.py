"""A governed run: one policy pack, one run folder with its ledger, and the stage events that the
training hooks or the CLI raise. ``Governance`` is the only place that connects audits, the policy
pack, the ledger and the model card; hooks and commands stay thin.

Run folder layout (``<run>/trustai/``): ``ledger.sqlite``, ``evidence/<seq>-<check>.json``,
``artifacts/<stage>-<step>-<check>/...`` (``artifacts/audit-<stage seq>-<check>/`` for stages that
``trustai audit`` raised on a saved checkpoint).
"""

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from trustai.audit import AuditContext
from trustai.canonical import digest, pretty_json
from trustai.errors import TrustaiUserError
from trustai.evidence import Evidence, Finding, Inputs, Stage
from trustai.ledger import LEDGER_NAME, Ledger, Record
from trustai.policy import Check, PolicyPack, judge, load_pack
from trustai.runtime import measure_with_limit

log = logging.getLogger("trustai")

ASYNC_STAGES = frozenset({Stage.CHECKPOINT, Stage.RELEASE, Stage.MONITOR})


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
        """``runtime="ray"`` runs checkpoint, release and monitor checks as Ray tasks (local Ray with
        ``ray_cpus`` CPUs started on demand, or the cluster at ``ray_address`` / ``RAY_ADDRESS``)."""
        if runtime not in ("inline", "ray"):
            raise TrustaiUserError(f"unknown runtime {runtime!r}", fix="use 'inline' or 'ray'")
        self.run_dir = Path(run_dir)
        self.pack = pack if isinstance(pack, PolicyPack) else load_pack(pack)
        self.signing_key = Path(signing_key) if signing_key else None
        self.seed = seed
        self._ledger: Ledger | None = None
        self.dataset: Any = None  # the training dataset, once a data stage has seen it
        self.dataset_inputs = Inputs()
        self.auditor: Any = None  # a trustai.ray_runtime.RayAuditor when audits run on Ray
        if runtime == "ray":
            from trustai.ray_runtime import RayAuditor

            self.auditor = RayAuditor(self, address=ray_address, num_cpus=ray_cpus)

    @property
    def trustai_dir(self) -> Path:
        """The folder inside the run that holds the ledger, evidence and artifacts."""
        return self.run_dir / "trustai"

    @property
    def ledger(self) -> Ledger:
        """The run's ledger, opened (and created) on first use."""
        if self._ledger is None:
            self._ledger = Ledger(self.trustai_dir / LEDGER_NAME)
        return self._ledger

    def start(self, manifest: dict[str, Any]) -> Record:
        """Record the start of the run: the pack that governs it and the provenance manifest."""
        pack = self.pack.model_dump(mode="json")
        return self.ledger.append(
            "run.start",
            {
                "policy_pack": {
                    "name": self.pack.name,
                    "version": self.pack.version,
                    "digest": digest(pack),
                    "source": self.pack.source,
                    "checks": pack["checks"],
                },
                "manifest": manifest,
            },
        )

    def run_stage(
        self,
        stage: Stage,
        *,
        step: int | None = None,
        checks: Iterable | None = None,
        on_done: Callable[[list[Finding]], None] | None = None,
        on_finding: Callable[[Finding], None] | None = None,
        trigger: str | None = None,
        **context: Any,
    ) -> list[Finding]:
        """Run the pack's checks for ``stage`` and record a stage event, each Evidence and each Finding.

        ``context`` fills AuditContext fields (dataset, checkpoint_dir, training, ...). Never raises
        for an audit's failure: it becomes an ``error`` finding. With an auditor set, checkpoint,
        release and monitor checks go to it and this returns at once (``[]``); ``on_finding(finding)``
        runs as each finding is recorded and ``on_done(findings)`` when all have been, inline or
        asynchronously. ``trigger`` names what raised a stage outside training (``trustai audit``): the
        stage event records it with the pack's digest, and its artifacts get folders of their own so
        the training-time artifacts of the same step stay.
        """
        event: dict[str, Any] = {"stage": stage.value, "step": step}
        if trigger is not None:
            event |= {
                "trigger": trigger,
                "policy_pack": {"name": self.pack.name, "digest": digest(self.pack.model_dump(mode="json"))},
            }
        record = self.ledger.append("stage", event, stage=stage.value)
        prefix = f"audit-{record.seq}" if trigger is not None else f"{stage.value}-{step or 0}"
        inputs = context.pop("inputs", None) or self.dataset_inputs.model_copy(update={"step": step})
        checks = list(checks if checks is not None else self.pack.checks_for(stage))
        if self.auditor is not None and stage in ASYNC_STAGES:
            jobs = [self._job(c, stage, step, inputs, f"{prefix}-{c.id}", context) for c in checks]
            self.auditor.submit(jobs, on_done, on_finding)
            return []
        findings = []
        for check in checks:
            ctx = AuditContext(
                stage=stage,
                seed=self.seed,
                inputs=inputs,
                artifact_dir=self.trustai_dir / "artifacts" / f"{prefix}-{check.id}",
                **context,
            )
            findings.append(self.record(check, measure_with_limit(check, ctx, self.trustai_dir)))
            if on_finding is not None:
                on_finding(findings[-1])
        if on_done is not None:
            on_done(findings)
        return findings

    def checkpoint_stages(self, folder: Path, step: int, *, training: Any, **context: Any) -> None:
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

    def _job(
        self, check: Check, stage: Stage, step: int | None, inputs: Inputs, artifact_name: str, context: dict
    ) -> Any:
        from trustai.datasets import resolve_dataset_root
        from trustai.ray_runtime import AuditJob

        def root(key: str) -> str | None:
            return str(resolve_dataset_root(context[key])) if context.get(key) is not None else None

        training = context.get("training")
        return AuditJob(
            check=check,
            stage=stage,
            step=step,
            inputs=inputs,
            artifact_name=artifact_name,
            seed=self.seed,
            checkpoint_dir=str(context["checkpoint_dir"]) if context.get("checkpoint_dir") else None,
            dataset_root=root("dataset"),
            reference_root=root("reference"),
            manifest=context.get("manifest"),
            training=training.summary() if hasattr(training, "summary") else training,
        )

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait for asynchronous audits, at most ``timeout_s`` (default: the pack's ``release_wait_s``);
        True if all finished."""
        if self.auditor is None:
            return True
        return self.auditor.drain(self.pack.release_wait_s if timeout_s is None else timeout_s)

    def record(self, check: Any, evidence: Evidence) -> Finding:
        """Append one Evidence and the Finding the pack draws from it; write the evidence file."""
        ev_record = self.ledger.append("evidence", evidence.canonical(), stage=evidence.stage.value)
        path = self.trustai_dir / "evidence" / f"{ev_record.seq:06d}-{check.id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(pretty_json(evidence.canonical()), encoding="utf-8")
        finding = judge(check, evidence)
        self.ledger.append(
            "finding",
            {**finding.canonical(), "evidence_record": ev_record.cite()},
            stage=evidence.stage.value,
        )
        if finding.status.value in ("fail", "error"):
            log.warning("trustai: %s %s: %s", check.id, finding.status.value, finding.message)
        return finding

    def seal(self, checkpoint_dir: Path, *, step: int | None, release: bool = False) -> Path:
        """Write the model card and evidence into ``checkpoint_dir`` (a pretrained_model folder), sign
        the folder when a key is set, and record the card in the ledger. Returns the card.json path."""
        from trustai.card import write_card
        from trustai.signing import sign_folder

        card_path, card = write_card(self, Path(checkpoint_dir), step=step, release=release)
        signature = sign_folder(Path(checkpoint_dir), self.signing_key) if self.signing_key else None
        self.ledger.append(
            "card",
            {
                "checkpoint": str(Path(checkpoint_dir).resolve().relative_to(self.run_dir.resolve()))
                if Path(checkpoint_dir).resolve().is_relative_to(self.run_dir.resolve())
                else str(checkpoint_dir),
                "step": step,
                "release": release,
                "card_digest": digest(card),
                "signed": signature is not None,
            },
            stage=(Stage.RELEASE if release else Stage.CHECKPOINT).value,
        )
        return card_path

    def close(self) -> None:
        """Stop the auditor's collector and close the ledger."""
        if self.auditor is not None:
            self.auditor.shutdown()
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
