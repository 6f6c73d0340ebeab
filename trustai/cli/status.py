"""A governed run at a glance on the console: ``trustai train`` ends with its verdict table and
``trustai status`` prints all of it. What is read from the ledger (checkpoints, findings, gates) is
``trustai.reports.run_status``.
"""

from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from trustai.cli._console import status_markup
from trustai.core.gate import GATING_SEVERITIES, Verdict
from trustai.reports.run_status import RunStatus

_VERDICT_COLOURS = {"pass": "green", "warn": "yellow", "blocked": "red"}


def _status_cell(status: str | None) -> str:
    if status is None:
        return "[dim]—[/dim]"
    try:
        return status_markup(status)
    except KeyError:  # a damaged ledger's status, shown as stored (`trustai ledger verify` names it)
        return escape(status)


def _verdict_cell(verdict: Verdict) -> str:
    colour = _VERDICT_COLOURS[verdict.value]
    return f"[{colour}]{verdict.value}[/{colour}]"


def verdict_table(status: RunStatus) -> Table:
    """A row per checkpoint: step, card (signed, unsigned or none), the latest status of each block and
    warn check of the pack (— when it has no finding) and the checkpoint's gate."""
    gating = [c for c in status.checks if c.severity in GATING_SEVERITIES]
    table = Table(
        Column("checkpoint", no_wrap=True),
        "step",
        "card",
        *(Column(f"{c.id}\n({c.severity})", overflow="fold") for c in gating),
        "gate",
        title=f"verdict: {status.pack.get('name')} v{status.pack.get('version')}",
    )
    for c in status.checkpoints:
        table.add_row(
            f"{c.name} (release)" if c.release else c.name,
            str(c.step) if c.step is not None else "—",
            ("signed" if c.signed else "[red]unsigned[/red]") if c.card else "[red]none[/red]",
            *(_status_cell(c.gate.statuses.get(check.id)) for check in gating),
            _verdict_cell(c.gate.verdict),
        )
    return table


def gate_line(status: RunStatus) -> str:
    """The run's gate, what decided it and which checks blocked or warned, as console markup."""
    deciding = status.deciding
    if deciding is None:
        where = "no checkpoint: the run's findings"
    else:
        where = f"{'released' if deciding.release else 'newest'} checkpoint {deciding.name}"
    named = status.gate.blocking or status.gate.warnings
    which = f": {', '.join(named)}" if named else ""
    return f"gate: {_verdict_cell(status.gate.verdict)} ({where}{escape(which)})"


def print_verdict(console: Console, status: RunStatus) -> None:
    """The verdict table and the run's gate line."""
    if status.checkpoints:
        console.print(verdict_table(status))
    else:
        console.print("no checkpoint saved")
    console.print(gate_line(status), highlight=False)


def print_status(console: Console, status: RunStatus) -> None:
    """Everything about the run: pack, dataset, training, the verdict table, the findings that decide
    each gate, the stages raised after training, and the run's gate."""
    pack, dataset = status.pack, status.dataset
    training = f"ended after {status.steps} steps" if status.ended else "not ended (running, or stopped)"
    console.print(
        f"run:      {status.run_dir}\n"
        f"pack:     {pack.get('name')} v{pack.get('version')} (sha256:{str(pack.get('digest'))[:16]}…)\n"
        f"dataset:  {dataset.get('id')} (fingerprint {str(dataset.get('fingerprint'))[:16]}…)\n"
        f"training: {training}",
        highlight=False,
        markup=False,
    )
    if status.checkpoints:
        console.print(verdict_table(status))
    findings = Table(
        "scope",
        Column("check", overflow="fold"),
        "stage",
        "status",
        "severity",
        Column("key metric or message", overflow="fold", ratio=2),
        title="findings (the latest of each check)",
    )
    scoped = [("run", f) for f in status.run_findings]
    scoped += [(c.name, f) for c in status.checkpoints for f in c.findings]
    for scope, f in scoped:
        findings.add_row(scope, f.check_id, f.stage, _status_cell(f.status), f.severity, escape(f.summary))
    console.print(findings)
    if status.later_stages:
        stages = Table("record", "stage", "step", "trigger", "time", title="stages after training")
        for s in status.later_stages:
            stages.add_row(
                str(s["seq"]), str(s["stage"]), str(s["step"]), str(s["trigger"] or "—"), s["time"]
            )
        console.print(stages)
    console.print(gate_line(status), highlight=False)
