"""Built-in evidence: what the run itself documents, apart from audit evidence — identity, interfaces,
software, architecture, compute, data provenance, training method, timeline, policy pack, outcomes,
gate, ledger and signatures. Each block returns Content whose every fact and table cites the ledger
records it rests on; a block with nothing to show returns empty Content (the section shows a gap)."""

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustai.reports.document import Cite, Content, Fact, Table, cell
from trustai.reports.findings import sentence
from trustai.reports.integrity import Integrity
from trustai.reports.model import RunEvidence
from trustai.reports.verdict import ReportGate
from trustai.reports.views import latest_of_each_check

from trustai.attest.card import FingerprintState, training_fingerprint
from trustai.core.ledger import Record
from trustai.core.records import RecordKind
from trustai.lerobot.dataset_digests import VERIFYING_AUDIT

# Packages whose versions characterise the software a policy was developed with (Annex IV 1(c)).
_KEY_PACKAGES = (
    "trustai",
    "lerobot",
    "torch",
    "torchvision",
    "accelerate",
    "transformers",
    "numpy",
    "safetensors",
    "model-signing",
)
# config.json entries about publishing, not about the model.
_NOT_ARCHITECTURE = {"device", "push_to_hub", "repo_id", "private", "tags", "license", "pretrained_revision"}
_STATUSES = ("pass", "warn", "fail", "error", "inconclusive", "not judged")


@dataclass(frozen=True)
class Ctx:
    """What blocks read: the run, its integrity verdicts and the gate the report states."""

    run: RunEvidence
    integrity: Integrity
    verdict: ReportGate

    @property
    def start(self) -> list[Cite]:
        """Citation of run.start (empty when the ledger lacks it)."""
        return [Cite.of(self.run.start)] if self.run.start else []

    @property
    def card(self) -> list[Cite]:
        """Citation of the subject checkpoint's card record."""
        return [Cite.of(self.run.subject_card)] if self.run.subject_card else []


def _shapes(features: object) -> list[tuple[str, str, str]]:
    if not isinstance(features, dict):
        return []
    return [
        (name, cell(spec.get("type")), cell(spec.get("shape")))
        for name, spec in sorted(features.items())
        if isinstance(spec, dict)
    ]


def parameter_count(folder: Path) -> int | None:
    """Return the number of parameters in ``folder/model.safetensors`` (read from its header only),
    or None when the file is absent or unreadable (a damaged file is for the integrity checks)."""
    from safetensors import SafetensorError, safe_open

    path = folder / "model.safetensors"
    if not path.is_file():
        return None
    total = 0
    try:
        with safe_open(str(path), framework="numpy") as weights:
            for key in weights.keys():  # noqa: SIM118 - safe_open is not a mapping
                total += math.prod(weights.get_slice(key).get_shape())
    except (SafetensorError, OSError, ValueError):
        return None
    return total


def identity(ctx: Ctx) -> Content:
    """The model, the checkpoint reported on, its code version and the governing policy pack."""
    run, facts = ctx.run, []
    facts.append(Fact("Model (run)", run.run_dir.name, cites=ctx.start))
    if run.ledger.run_id:
        facts.append(Fact("Run id", run.ledger.run_id, cites=ctx.start))
    if run.subject_card:
        facts.append(Fact("Checkpoint reported on", run.subject_label, cites=ctx.card))
    config = run.subject_config()
    if config:
        facts.append(Fact("Policy type", cell(config.get("type")), cites=ctx.card))
    git = run.manifest.get("git") or {}
    if git:
        dirty = {True: " (uncommitted changes)", False: " (clean)"}.get(git.get("dirty"), "")
        facts.append(Fact("Code version (git)", f"{cell(git.get('commit'))}{dirty}", cites=ctx.start))
    pack = run.start.payload.get("policy_pack", {}) if run.start else {}
    if pack:
        text = f"{pack.get('name')} v{pack.get('version')} (digest {str(pack.get('digest'))[:12]})"
        facts.append(Fact("Policy pack", text, cites=ctx.start))
    return Content(facts=facts)


def interfaces(ctx: Ctx) -> Content:
    """The policy's inputs (cameras, state, language) and outputs (actions) with their shapes."""
    config = ctx.run.subject_config()
    if not config:
        return Content()
    rows = [["input", *f] for f in _shapes(config.get("input_features"))]
    rows += [["output", *f] for f in _shapes(config.get("output_features"))]
    if not rows:
        return Content()
    table = Table("Policy inputs and outputs", ["direction", "feature", "type", "shape"], rows, ctx.card)
    return Content(tables=[table])


def software(ctx: Ctx) -> Content:
    """Python, platform, CUDA and the versions of the key packages the run used."""
    env = ctx.run.manifest.get("environment") or {}
    if not env:
        return Content()
    packages = env.get("packages") or {}
    rows = [["python", cell(env.get("python"))], ["platform", cell(env.get("platform"))]]
    rows += [["cuda", cell(env.get("cuda"))]]
    rows += [[name, packages[name]] for name in _KEY_PACKAGES if name in packages]
    note = f"{len(packages)} installed packages are recorded with their versions in the run manifest."
    return Content(tables=[Table("Software environment", ["component", "version"], rows, ctx.start, note)])


def architecture(ctx: Ctx) -> Content:
    """The policy's configuration (LeRobot config.json) and its parameter count."""
    config = ctx.run.subject_config()
    if not config or ctx.run.subject is None:
        return Content()
    rows = [
        [key, cell(value)]
        for key, value in sorted(config.items())
        if key not in _NOT_ARCHITECTURE and (value is None or isinstance(value, str | int | float | bool))
    ]
    facts = []
    count = parameter_count(ctx.run.subject)
    if count is not None:
        facts.append(Fact("Parameters", f"{count:,}", cites=ctx.card))
    note = "From the signed checkpoint's config.json; its card record anchors the folder's signature."
    return Content(facts, [Table("Policy configuration", ["setting", "value"], rows, ctx.card, note)])


def compute(ctx: Ctx) -> Content:
    """The hardware, device, length and wall-clock time of training."""
    run = ctx.run
    env, config = run.manifest.get("environment") or {}, run.manifest.get("train_config") or {}
    if not env and not config:
        return Content()
    policy = config.get("policy") or {}
    gpus = ", ".join(env.get("gpus") or []) or "none"
    facts = [
        Fact("Hardware", f"{cell(env.get('machine'))}, {cell(env.get('cpu_count'))} CPU cores, GPUs: {gpus}"),
        Fact("Training device", cell(policy.get("device"))),
        Fact("Steps x batch size", f"{cell(config.get('steps'))} x {cell(config.get('batch_size'))}"),
    ]
    for fact in facts:
        fact.cites = ctx.start
    # A resumed run trained from its first start to its last end.
    starts, end = run.ledger.starts, run.ledger.end
    if starts and end:
        cites = [Cite.of(starts[0]), Cite.of(end)]
        facts.append(Fact("Training time", f"{starts[0].ts} to {end.ts}", cites=cites))
    return Content(facts=facts)


def dataset(ctx: Ctx) -> Content:
    """The training data set's identity and content fingerprint: the one the run recorded at start-up,
    else (pending at start-up: large files not read before training) the one the data stage's
    ``provenance.dataset`` check verified by reading every byte, citing that evidence; else, in words,
    that it is still pending or was not verified."""
    data = ctx.run.manifest.get("dataset") or {}
    if not data:
        return Content()
    found = training_fingerprint(ctx.run.manifest, ctx.run.start, ctx.run.items, VERIFYING_AUDIT)
    checked = [Cite.of(found.evidence)] if found.evidence else []
    label = "Data set fingerprint (content sha256)"
    facts = [Fact("Training data set", cell(data.get("id")), cites=ctx.start)]
    if found.state == FingerprintState.VERIFIED:
        facts.append(Fact(label, str(found.value), cites=checked))
        facts.append(
            Fact(
                "Fingerprint verified by",
                f"{VERIFYING_AUDIT} (data stage) re-read every byte and confirmed the digests claimed at "
                f"start-up, when {_pending(data)} not been read",
                cites=[*checked, *ctx.start],
            )
        )
    elif found.state == FingerprintState.PENDING:
        text = (
            f"pending: {_pending(data)} not been read at start-up, and no {VERIFYING_AUDIT} evidence "
            "has verified it yet"
        )
        facts.append(Fact(label, text, cites=ctx.start))
    elif found.state == FingerprintState.UNCONFIRMED:
        text = f"not verified: {VERIFYING_AUDIT} did not confirm the digests claimed at start-up"
        facts.append(Fact(label, text, cites=[*checked, *ctx.start]))
    else:
        facts.append(Fact(label, cell(found.value), cites=ctx.start))
    return Content(facts=facts)


def _pending(data: dict[str, Any]) -> str:
    """How many of the data set's files the run manifest says were pending at start-up, as words."""
    digests = data.get("digests") or {}
    pending, files = (digests.get("sources") or {}).get("pending"), len(digests.get("files") or [])
    return f"{pending} of {files} files had" if pending and files else "some files had"


def method(ctx: Ctx) -> Content:
    """How the policy was trained: seed, optimiser, schedule, and any pre-trained weights it started from."""
    config = ctx.run.manifest.get("train_config") or {}
    if not config:
        return Content()
    policy = config.get("policy") or {}
    optimizer = config.get("optimizer") or {}
    scheduler = config.get("scheduler") or {}
    rows = [
        ["trainer", "LeRobot lerobot-train (governed by trustai)"],
        ["seed", cell(ctx.run.manifest.get("seed"))],
        ["steps", cell(config.get("steps"))],
        ["batch size", cell(config.get("batch_size"))],
        ["optimizer", cell(optimizer.get("type"))],
        ["learning rate", cell(optimizer.get("lr"))],
        ["scheduler", cell(scheduler.get("type") if scheduler else None)],
        ["policy training preset", cell(config.get("use_policy_training_preset"))],
        ["pre-trained policy weights", cell(policy.get("pretrained_path"))],
        ["pre-trained backbone weights", cell(policy.get("pretrained_backbone_weights"))],
    ]
    return Content(tables=[Table("Training method", ["item", "value"], rows, ctx.start)])


def _event(record: Record) -> str | None:
    """What a record tells the timeline, or None for evidence and findings (shown elsewhere)."""
    p = record.payload
    match record.kind:
        case RecordKind.RUN_START:
            manifest = p.get("manifest")
            return "run resumed" if isinstance(manifest, dict) and manifest.get("resume") else "run started"
        case RecordKind.STAGE:
            return f"stage {p.get('stage')}"
        case RecordKind.CARD:
            return f"card sealed for {p.get('checkpoint')}" + (" (release)" if p.get("release") else "")
        case RecordKind.PRIVACY_STOP:
            return f"training stopped at the privacy budget (ε = {cell(p.get('epsilon'))})"
        case RecordKind.HOOK_ERROR:
            return f"governance hook {p.get('hook')} failed: {p.get('error')}"
        case RecordKind.RUN_END:
            return f"training ended after {p.get('steps')} steps"
    return None


def timeline(ctx: Ctx) -> Content:
    """Every start, stage event, sealed checkpoint, privacy stop and hook error of the run, dated, in
    ledger order."""
    rows, cites = [], []
    for record in ctx.run.records:
        detail = _event(record)
        if detail is None:
            continue
        rows.append([Cite.of(record).label, record.ts, cell(record.payload.get("step")), detail])
        cites.append(Cite.of(record))
    table = Table("Run timeline", ["record", "date (UTC)", "step", "event"], rows, cites)
    return Content(tables=[table]) if rows else Content()


def policy_pack(ctx: Ctx) -> Content:
    """The checks fixed before training: audits, stages, thresholds, severities and references."""
    pack = ctx.run.start.payload.get("policy_pack", {}) if ctx.run.start else {}
    if not pack.get("checks"):
        return Content()
    rows = []
    for check in pack["checks"]:
        bounds = [
            f"{metric} {'≥' if op == 'min' else '≤'} {cell(limit)}"
            for metric, t in sorted((check.get("thresholds") or {}).items())
            for op, limit in sorted(t.items())
            if limit is not None
        ]
        rows.append(
            [
                check.get("id"),
                check.get("stage"),
                check.get("audit"),
                "; ".join(bounds) or "—",
                check.get("severity"),
                ", ".join(check.get("references") or []) or "—",
                check.get("description") or "—",
            ]
        )
    columns = ["check", "stage", "audit", "thresholds", "severity", "references", "purpose"]
    note = (
        f"Policy pack {pack.get('name')} v{pack.get('version')}, digest {pack.get('digest')}: "
        "thresholds were fixed before training and recorded in the run.start ledger record."
    )
    return Content(tables=[Table("Checks, metrics and thresholds", columns, rows, ctx.start, note)])


def outcomes(ctx: Ctx) -> Content:
    """How often each check passed, warned, failed, broke (error), could not measure (inconclusive) or
    went unjudged, and its latest record."""
    counts: dict[tuple[str, str], Counter[str]] = {}
    latest: dict[tuple[str, str], Record] = {}
    for item in ctx.run.items:
        key = (item.check_id, item.stage)
        counts.setdefault(key, Counter())[item.status] += 1
        latest[key] = item.record
    rows = [
        [
            check,
            stage,
            *(str(counts[(check, stage)][s]) for s in _STATUSES),
            Cite.of(latest[(check, stage)]).label,
        ]
        for check, stage in sorted(counts)
    ]
    if not rows:
        return Content()
    columns = ["check", "stage", *_STATUSES, "latest record"]
    cites = [Cite.of(item.record) for item in ctx.run.items]
    return Content(tables=[Table("Outcomes of every check", columns, rows, cites)])


def limitations(ctx: Ctx) -> Content:
    """Checks whose latest finding did not pass: known limitations and open problems."""
    judged = [item for item in ctx.run.items if item.finding is not None]
    rows = [
        [item.check_id, item.status, sentence(item, lead=False), Cite.of(item.finding).label]
        for item in latest_of_each_check(judged)
        if item.finding is not None and item.status != "pass"
    ]
    columns = ["check", "status", "finding", "record"]
    cites = [Cite.of(i.finding) for i in judged if i.finding is not None]
    note = "" if rows else "The latest finding of every judged check passed."
    return Content(
        tables=[Table("Findings that did not pass (the latest of each check)", columns, rows, cites, note)]
    )


def gate(ctx: Ctx) -> Content:
    """The promotion gate, as `trustai status` states it: which ``block`` checks failed, broke or could
    not measure, stopping promotion."""
    verdict = ctx.verdict
    found = verdict.gate
    text = found.verdict.value
    if found.blocking:
        text = "blocked by " + ", ".join(found.blocking)
    elif found.warnings:
        text = "pass with warnings from " + ", ".join(found.warnings)
    blocking = [Cite.of(i.finding) for i in verdict.items if i.check_id in found.blocking and i.finding]
    read = [Cite.of(i.finding) for i in verdict.items if i.finding is not None]
    return Content(
        facts=[
            Fact("Gate", f"{text} (decided on the {verdict.scope})", cites=blocking or read[-1:]),
            Fact(
                "Severity scheme",
                "block: a failed, broken or inconclusive check stops promotion; warn and info are reported "
                "only.",
                cites=ctx.start,
            ),
        ]
    )


def ledger(ctx: Ctx) -> Content:
    """The automatic event log: an append-only, hash-chained SQLite ledger whose head is signed
    (anchored) whenever something is sealed, verified now."""
    run, verdict, anchored = ctx.run, ctx.integrity.ledger, ctx.integrity.anchors
    if not run.records:
        return Content()
    first, head = run.records[0], run.records[-1]
    return Content(
        facts=[
            Fact(
                "Event log",
                f"{len(run.records)} records from {first.ts} to {head.ts}; each record's hash covers its "
                "content and the previous record's hash (RFC 8785 canonical JSON, sha256)",
                cites=[Cite.of(first), Cite.of(head)],
            ),
            Fact("Ledger head", head.hash, cites=[Cite.of(head)]),
            Fact("Chain verified at rendering", verdict.status, cites=[Cite.of(head)]),
            Fact(
                "Signed anchors verified at rendering",
                f"{anchored.status} ({len(run.ledger.anchors)} anchors; each signs the ledger's head "
                "when a card, the run's end or a command's records are sealed)",
                cites=[Cite.of(a) for a in run.ledger.anchors[-1:]],
            ),
        ]
    )


def signing(ctx: Ctx) -> Content:
    """Signed model cards: each sealed checkpoint, its card digest, and its signature as verified now."""
    rows = []
    for card in ctx.run.ledger.cards:
        name = ctx.run.display(ctx.run.checkpoint_folder(card))
        verdict = ctx.integrity.signatures.get(name)
        p = card.payload
        rows.append(
            [
                name,
                cell(p.get("step")),
                cell(p.get("release")),
                str(p.get("card_digest"))[:16],
                cell(p.get("signed")),
                verdict.status if verdict else "out of scope",
                Cite.of(card).label,
            ]
        )
    if not rows:
        return Content()
    columns = ["checkpoint", "step", "release", "card digest", "signed", "signature now", "record"]
    note = (
        "Weights, model card and evidence copies are signed as one folder with OpenSSF model signing "
        "(Sigstore bundle, DSSE envelope, in-toto statement listing every file's digest)."
    )
    cites = [Cite.of(card) for card in ctx.run.ledger.cards]
    return Content(tables=[Table("Sealed checkpoints", columns, rows, cites, note)])


# Name -> (title shown in crosswalks, builder).
BLOCKS: dict[str, tuple[str, Callable[[Ctx], Content]]] = {
    "identity": ("model identity and version", identity),
    "interfaces": ("policy inputs and outputs", interfaces),
    "software": ("software environment", software),
    "architecture": ("policy architecture", architecture),
    "compute": ("training compute", compute),
    "dataset": ("training data provenance", dataset),
    "method": ("training method", method),
    "timeline": ("run timeline", timeline),
    "policy_pack": ("checks and thresholds fixed beforehand", policy_pack),
    "outcomes": ("check outcomes", outcomes),
    "limitations": ("findings that did not pass", limitations),
    "gate": ("promotion gate", gate),
    "ledger": ("hash-chained event log", ledger),
    "signing": ("signed model cards", signing),
}
