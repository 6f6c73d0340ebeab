"""``trustai audit``: a policy pack's checkpoint-stage checks on saved checkpoints, outside training,
as a CI/CD promotion gate.

One checkpoint runs inline; ``--all`` audits every checkpoint of a run in parallel as Ray tasks (a
local Ray on every core, or the cluster at ``--ray-address``), all into the run's one ledger.
``trustai.cli.audit_plan`` validates everything first and writes nothing; only then ``run_audit`` appends
to the run's ledger (or starts one in ``--out`` for checkpoints that no governed run owns), runs each
check, and refreshes and re-signs each checkpoint's model card as its last finding lands. The exit
code is 1 when a ``block`` finding fails or a card could not be re-signed, 0 otherwise; bad input
raises TrustaiUserError (exit 2), a failed integrity check exits 1 before anything is written.
"""

import os
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column, Table

from trustai.cli._console import status_markup
from trustai.cli.audit_plan import (
    AuditPlan,
    AuditTarget,
    IntegrityError,
    plan_audit,
    run_checkpoints,
)
from trustai.core.evidence import Finding, Stage
from trustai.core.gate import Gate, gate
from trustai.core.load_counts import load_counts, loads_since
from trustai.governance import Governance
from trustai.lerobot.policy_cache import loaded_policy
from trustai.runtime import ray_session

TRIGGER = "trustai audit"


@dataclass
class CheckpointAudit:
    """The findings of one checkpoint's audit (in the pack's check order) and its re-signed card."""

    target: AuditTarget
    findings: list[Finding] = field(default_factory=list)
    card: Path | None = None
    card_error: str | None = None  # why the card could not be refreshed and re-signed

    @property
    def gate(self) -> Gate:
        """The promotion gate over this checkpoint's findings."""
        return gate(self.findings)


@dataclass
class AuditResult:
    """Every audited checkpoint's findings and card, and how often each checkpoint's policy was loaded
    while the audits ran (in this process and on the Ray workers; once per worker at most)."""

    audits: list[CheckpointAudit]
    policy_loads: dict[str, int] = field(default_factory=dict)

    @property
    def findings(self) -> list[Finding]:
        """All findings, checkpoint by checkpoint."""
        return [f for audit in self.audits for f in audit.findings]

    @property
    def exit_code(self) -> int:
        """1 when a ``block`` finding failed or errored (the promotion gate) or a card was not
        re-signed, else 0."""
        blocked = any(a.gate.blocked for a in self.audits)
        return 1 if blocked or any(a.card_error for a in self.audits) else 0


class _Bars:
    """Two progress bars: checkpoints whose card is sealed, and audits whose finding is recorded."""

    def __init__(self, progress: Progress | None, checkpoints: int, audits: int):
        self.progress = progress
        if progress is not None:
            self.checkpoints: TaskID = progress.add_task("checkpoints", total=checkpoints)
            self.audits: TaskID = progress.add_task("audits", total=audits)

    def audited(self, finding: Finding) -> None:
        """One more audit's finding is in the ledger."""
        if self.progress is not None:
            self.progress.update(self.audits, advance=1, description=f"audits (last: {finding.check_id})")

    def sealed(self) -> None:
        """One more checkpoint's card is re-signed (or failed to be)."""
        if self.progress is not None:
            self.progress.advance(self.checkpoints)


def run_audit(
    plan: AuditPlan,
    progress: Progress | None = None,
    *,
    runtime: str = "inline",
    ray_address: str | None = None,
) -> AuditResult:
    """Record a stage event per checkpoint, run every check on it (each failure an ``error`` finding),
        then refresh and re-sign its card once its last finding is recorded; each card and the audit's end
    anchor the ledger (trustai.attest.anchor).

        ``runtime="inline"`` audits one checkpoint after another in this process, loading each policy
        once (the plan's load, for the last checkpoint planned); ``"ray"`` runs every check of every
        checkpoint as a Ray task (local Ray on all cores and GPUs, or the cluster at ``ray_address``;
        a task that runs a policy takes a GPU when there is one) and waits for them, each bounded by
        its check's ``timeout_s``; each worker loads a checkpoint's policy once. Each audit gets its
        own copy of the policy. ``progress`` shows a bar over checkpoints and one over audits. Raises
        TrustaiUserError, before anything is written, when the Ray cluster cannot be reached.
    """
    loads = load_counts()
    # Ray started here rather than by the executor, so that a local Ray also offers this machine's GPUs.
    cluster = (
        ray_session.session(ray_address, os.cpu_count(), num_gpus=None) if runtime == "ray" else nullcontext()
    )
    with cluster:
        governance = Governance(
            plan.run_dir,
            plan.pack,
            signing_key=plan.key,
            seed=plan.seed,
            runtime=runtime,
            ray_address=ray_address,
            ray_cpus=os.cpu_count(),
        )
        audits = _audit_checkpoints(
            plan, governance, _Bars(progress, len(plan.targets), len(plan.targets) * len(plan.checks))
        )
    policy_loads = Counter(loads_since(loads))
    policy_loads.update(getattr(governance.executor, "policy_loads", {}))
    return AuditResult(audits, dict(policy_loads))


def _audit_checkpoints(plan: AuditPlan, governance: Governance, bars: _Bars) -> list[CheckpointAudit]:
    """Run the plan through ``governance`` (then closed), sealing each checkpoint's card as its last
    finding lands, and return each checkpoint's audit."""
    order = {check.id: i for i, check in enumerate(plan.checks)}
    audits = [CheckpointAudit(target) for target in plan.targets]

    def seal(audit: CheckpointAudit, findings: list[Finding]) -> None:
        audit.findings = sorted(findings, key=lambda f: order[f.check_id])
        try:
            target = audit.target
            audit.card = governance.seal(target.folder, step=target.step, release=target.release)
        except Exception as exc:  # recorded and reported: the other checkpoints still get their cards
            audit.card_error = f"{type(exc).__name__}: {exc}"
        bars.sealed()

    try:
        governance.executor.start()
        if plan.new_ledger:
            governance.start(plan.manifest)
        for audit in audits:
            context = {
                "dataset": plan.dataset,
                "checkpoint_dir": audit.target.folder,
                "manifest": plan.manifest,
                "inputs": audit.target.inputs,
            }
            if governance.executor is governance.inline:  # loaded once for all of this checkpoint's checks
                context["policy"] = loaded_policy(audit.target.folder, seed=plan.seed)
            governance.run_stage(
                Stage.CHECKPOINT,
                step=audit.target.step,
                checks=plan.checks,
                trigger=TRIGGER,
                on_finding=bars.audited,
                on_done=lambda findings, audit=audit: seal(audit, findings),
                **context,
            )
        # Every job is cancelled at its own time limit, so this bound is never the one that bites.
        governance.drain(timeout_s=len(plan.targets) * sum(c.timeout_s for c in plan.checks) + 60)
    finally:
        try:
            governance.anchor(TRIGGER)  # the audit's records are signed as the audit ends
        finally:
            governance.close()
    return audits


def audit_main(
    console: Console,
    target: Path,
    dataset: Path,
    pack: str,
    *,
    all_checkpoints: bool = False,
    ray_address: str | None = None,
    frames: int | None = None,
    out: Path | None = None,
    key: Path | None = None,
    public_key: Path | None = None,
) -> int:
    """The ``trustai audit`` command: plan, run with progress bars, print the findings; return the
    exit code (TrustaiUserError propagates for the CLI's exit 2). ``target`` is a checkpoint, or a
    run folder with ``all_checkpoints``; ``--all`` or a ``ray_address`` runs the audits on Ray."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    options = {"frames": frames, "out": out, "key": key, "public_key": public_key}
    try:
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            total = len(run_checkpoints(target)) if all_checkpoints else 1
            bar = progress.add_task("verifying checkpoints", total=total)
            plan = plan_audit(
                target,
                dataset,
                pack,
                all_checkpoints=all_checkpoints,
                checked=lambda _: progress.advance(bar),
                **options,
            )
            progress.remove_task(bar)
            runtime = "ray" if all_checkpoints or ray_address else "inline"
            result = run_audit(plan, progress, runtime=runtime, ray_address=ray_address)
    except IntegrityError as exc:
        for problem in exc.problems:
            console.print(f"[red]✗[/red] {problem}", highlight=False)
        console.print("[red]refusing to audit and re-sign a checkpoint that no longer verifies[/red]")
        return 1
    _print_result(console, plan, result)
    return result.exit_code


def _print_result(console: Console, plan: AuditPlan, result: AuditResult) -> None:
    """One table of findings (a row per check and checkpoint), each card, the ledger and the gate."""
    several = len(plan.targets) > 1
    subject = f"{len(plan.targets)} checkpoints of {plan.run_dir}" if several else plan.targets[0].folder
    title = f"{plan.pack.name}: {subject}"
    columns = [Column("check", no_wrap=True), Column("audit", overflow="fold"), "status", "severity"]
    table = Table(*(["checkpoint"] if several else []), *columns, "finding", title=title)
    for audit in result.audits:
        step = [audit.target.name] if several else []
        for f in audit.findings:
            table.add_row(
                *step, f.check_id, f.audit, status_markup(f.status.value), f.severity.value, f.message
            )
    console.print(table)
    for audit in result.audits:
        if audit.card is not None:
            console.print(f"card:   {audit.card} (re-signed)", highlight=False)
        else:
            why = escape(audit.card_error or "")
            console.print(f"[red]card:   {audit.target.folder} NOT re-signed: {why}[/red]", highlight=False)
    console.print(f"ledger: {plan.ledger_path}", highlight=False)
    blocked = [a for a in result.audits if a.gate.blocked]
    warned = [a for a in result.audits if a.gate.warnings and not a.gate.blocked]
    if blocked:
        named = [a.target.name for a in blocked] if several else list(blocked[0].gate.blocking)
        console.print(f"gate:   [red]blocked[/red] ({', '.join(named)})", highlight=False)
    elif warned:
        named = [a.target.name for a in warned] if several else list(warned[0].gate.warnings)
        console.print(f"gate:   [yellow]warn[/yellow] ({', '.join(named)})", highlight=False)
    else:
        console.print("gate:   [green]pass[/green]")
