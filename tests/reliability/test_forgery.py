"""Forgery trials: a forger who can write every file of a governed run and run trustai's own code, but
holds no signing key. ``CLASSES`` states what a defended trustai does about each class of attack. Every
trial forges a fresh copy of the governed run and counts as detected only when one of its probes (a
`trustai` command) refuses it, exit 1 (`trustai audit`: 1 or 2) naming what was forged, and only with a
probe that accepts the untouched run (``test_the_genuine_run_passes_every_probe``). ``make test`` runs
one attack per class; ``make reliability`` runs every attack ``SCALE.forgery`` times.
"""

import json
import os
import random
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability.conftest import GovernedRun
from tests.reliability.figures import FIGURES
from tests.reliability.forgery import (
    Entry,
    entries,
    names_records,
    nudge_weights,
    rechain,
    says,
    trustai_here,
)
from tests.reliability.hostile import plant_pickles
from tests.reliability.runs import CORE_PACK, copy_run, open_ledger_for_edit, own
from tests.reliability.scale import SCALE
from trustai import layout
from trustai.attest.signing import sign_folder
from trustai.attest.verify import verify_checkpoint
from trustai.core.canonical import digest, pretty_json

RELEASED, EARLIER = "000004", "000002"
CLASSES = {
    "a": "records after the last signed card edited, appended or removed, chain recomputed: "
    "`trustai ledger verify --public-key` names a record after that card",
    "b": "the ledger truncated back to an earlier card: `trustai ledger verify --public-key` names a cut "
    f"record, `trustai verify` of {RELEASED} names one, or `trustai report` on the run fails",
    "c": "the whole chain rewritten with a changed finding: `trustai ledger verify --public-key` or "
    "`trustai verify` of a checkpoint names a rewritten record",
    "d": f"{EARLIER}'s signed folder copied over {RELEASED}'s (rollback, swap): `trustai verify` names the "
    "checkpoint it really is, or `trustai report` on the run fails",
    "e": f"a card record appended without a key naming {EARLIER} as released: `trustai ledger verify "
    "--public-key` names it, or `trustai report` on the run fails",
    "f": "a forged ledger in a genuine checkpoint folder, in its signed model folder, or in a folder of "
    "its own, whose card records name the genuine checkpoints: `trustai report` on it fails",
    "g": "laundering: a tampered checkpoint without model.sig (or re-signed with a stolen key) given to "
    "`trustai audit --key`: the audit refuses (exit 1 or 2) saying why, before writing anything",
    "h": "`trustai report` on a run whose integrity fails: exit 1 with the integrity alarm",
}


@dataclass(frozen=True)
class Probe:
    """A `trustai` command that must refuse the forgery: exit with one of ``codes`` naming one of
    ``names`` or of the ledger records ``seqs``. ``kind`` says which command on which part of the run,
    to look up how it met the genuine run."""

    kind: str
    args: tuple[object, ...]
    names: tuple[str, ...] = ()
    seqs: tuple[int, ...] = ()
    codes: tuple[int, ...] = (1,)

    def names_it(self, output: str) -> bool:
        """True when ``output`` names the forgery (the command's own path arguments aside)."""
        besides = tuple(str(a) for a in self.args if isinstance(a, Path))
        named = any(says(output, name, besides=besides) for name in self.names)
        return named or names_records(output, self.seqs)


def private_run(run_dir: Path, dest: Path) -> Path:
    """A copy of the run whose every file but the weights is private: forgeries, and audits that are not
    refused, write into checkpoint folders, and must never write through a hard link into the governed
    run the other trials copy. Weights are only ever replaced by new files, never written in place."""
    copy = copy_run(run_dir, dest)
    for path in copy.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.suffix != ".safetensors":
            own(path)
    return copy


@dataclass
class Victim:
    """A private copy of the governed run to forge, and the commands that should catch a forgery."""

    run: Path
    governed: GovernedRun
    dataset: Path
    rng: random.Random

    @property
    def ledger(self) -> Path:
        return layout.ledger_path(self.run)

    def model(self, step: str) -> Path:
        """The pretrained_model folder of checkpoint ``step``."""
        return self.run / layout.CHECKPOINTS_DIR / step / layout.MODEL_DIR

    def ledger_verify(self, seqs: list[int]) -> Probe:
        """`trustai ledger verify RUN --public-key`, naming one of the records ``seqs``."""
        args = ("ledger", "verify", self.run, "--public-key", self.governed.public_key)
        return Probe("ledger verify", args, seqs=tuple(seqs))

    def verify(self, step: str, names: tuple[str, ...] = (), seqs: Iterable[int] = ()) -> Probe:
        """`trustai verify` on checkpoint ``step``'s folder."""
        args = ("verify", self.model(step), "--public-key", self.governed.public_key)
        return Probe(f"verify {step}", args, names, tuple(seqs))

    def report(self, target: Path, names: tuple[str, ...] = ()) -> Probe:
        """`trustai report` on ``target``: exit 1 with the integrity alarm (or naming ``names``)."""
        out = self.run.parent / f"report-{self.rng.randrange(1 << 30)}.md"
        args = ("report", target, "--output", out, "--public-key", self.governed.public_key)
        return Probe("report", args, (*names, "integrity"))

    def audit(self, step: str) -> Probe:
        """`trustai audit --key` on checkpoint ``step``: refused (exit 1 or 2) saying why."""
        pack = self.run.parent / "pack.yaml"
        pack.write_text(CORE_PACK)
        args = ("audit", self.model(step), "--dataset", self.dataset, "--pack", pack)
        args += ("--key", self.governed.private_key, "--public-key", self.governed.public_key)
        names = ("signature missing", "weights digest differs", "pickle", "changed since signing")
        return Probe("audit", args, names, codes=(1, 2))


@dataclass(frozen=True)
class Forgery:
    """What a trial forged, and the probes of which one must catch it (tried in order)."""

    what: str
    probes: tuple[Probe, ...]


Attack = Callable[[Victim], Forgery]


def _signed_cards(chain: list[Entry]) -> list[int]:
    """The sequence numbers of the signed card records (a genuine ledger numbers records from 1)."""
    return [i for i, e in enumerate(chain, 1) if e.kind == "card" and e.payload.get("signed") is True]


def _without_anchors_after(chain: list[Entry], seq: int) -> list[Entry]:
    """``chain`` without the anchors after record ``seq``: their signatures cannot be redone."""
    return [e for i, e in enumerate(chain, 1) if i <= seq or e.kind != "anchor"]


# (a) after the last signed card


def append_pass_finding(v: Victim) -> Forgery:
    """Append a monitor stage, drift evidence and a 'pass' finding judging it after training."""
    chain = entries(v.ledger)
    last = _signed_cards(chain)[-1]
    template = next(e for e in chain if e.kind == "evidence")
    stage = Entry(template.ts, "stage", "monitor", {"stage": "monitor", "step": None})
    evidence = Entry(
        template.ts,
        "evidence",
        "monitor",
        template.payload
        | {"audit": "drift.features", "check_id": "drift", "stage": "monitor", "error": None}
        | {"metrics": {"drift_score": v.rng.uniform(0, 0.01)}, "tables": {}, "artifacts": []},
    )
    hashes = rechain(v.ledger, [*chain, stage, evidence])
    seq = len(chain) + 2
    finding = Entry(
        template.ts,
        "finding",
        "monitor",
        {
            "check_id": "drift",
            "audit": "drift.features",
            "stage": "monitor",
            "status": "pass",
            "severity": "block",
            "message": "no drift",
            "thresholds": [],
            "references": [],
            "evidence_digest": digest(evidence.payload),
            "evidence_record": {"seq": seq, "hash": hashes[-1], "kind": "evidence"},
        },
    )
    rechain(v.ledger, [*chain, stage, evidence, finding])
    return Forgery(
        f"appended a forged 'pass' drift finding after the last signed card (record {last})",
        (v.ledger_verify(list(range(last + 1, seq + 2))), v.verify(RELEASED, seqs=[seq - 1, seq, seq + 1])),
    )


def edit_after_last_card(v: Victim) -> Forgery:
    """Edit a record after the last signed card (run.end now names 000002), chain recomputed, the
    anchors after the card dropped."""
    chain = entries(v.ledger)
    last = _signed_cards(chain)[-1]
    chain = _without_anchors_after(chain, last)
    at = next(i for i, e in enumerate(chain, 1) if i > last and e.kind == "run.end")
    chain[at - 1] = chain[at - 1].edit(release_checkpoint=f"checkpoints/{EARLIER}/pretrained_model")
    rechain(v.ledger, chain)
    return Forgery(
        f"edited run.end (record {at}) after the last signed card (record {last}), chain recomputed",
        (v.ledger_verify(list(range(last + 1, len(chain) + 1))), v.verify(RELEASED, seqs=[at])),
    )


def remove_after_last_card(v: Victim) -> Forgery:
    """Remove every record after the last signed card."""
    chain = entries(v.ledger)
    last = _signed_cards(chain)[-1]
    rechain(v.ledger, chain[:last])
    return Forgery(
        f"removed records {last + 1}..{len(chain)} after the last signed card",
        (v.ledger_verify(list(range(last, len(chain) + 1))), v.verify(RELEASED, seqs=[last])),
    )


# (b) truncation to an earlier card


def truncate_to_earlier_card(v: Victim) -> Forgery:
    """Cut the ledger back to a signed card before the last one."""
    chain = entries(v.ledger)
    cards = _signed_cards(chain)
    to = v.rng.choice(cards[:-1])
    rechain(v.ledger, chain[:to])
    seqs = list(range(to, len(chain) + 1))
    probes = (v.ledger_verify(seqs), v.verify(RELEASED, seqs=seqs), v.report(v.run))
    return Forgery(f"truncated the ledger back to the card record {to} (of {len(chain)})", probes)


# (c) full chain rewrite


def rewrite_finding(v: Victim, *, keep_anchors: bool) -> Forgery:
    """Turn a finding before the last card into a 'pass', recompute the whole chain."""
    chain = entries(v.ledger)
    last = _signed_cards(chain)[-1]
    findings = [i for i, e in enumerate(chain, 1) if e.kind == "finding" and i < last]
    failed = [i for i in findings if chain[i - 1].payload.get("status") != "pass"]
    at = v.rng.choice(failed or findings)
    forged = chain[at - 1] = chain[at - 1].edit(status="pass", message="all thresholds held")
    chain = chain if keep_anchors else _without_anchors_after(chain, 0)
    rechain(v.ledger, chain)
    at = next(i for i, e in enumerate(chain, 1) if e is forged)  # renumbered without the anchors
    seqs = list(range(at, len(chain) + 1))
    kept = "kept" if keep_anchors else "dropped"
    return Forgery(
        f"rewrote finding record {at} as 'pass' and recomputed the chain (anchors {kept})",
        (v.ledger_verify(seqs), v.verify(RELEASED, seqs=seqs), v.verify(EARLIER, seqs=seqs)),
    )


# (d) rollback and swap of checkpoint folders


def _replace_folder(source: Path, dest: Path) -> None:
    shutil.rmtree(dest)
    shutil.copytree(source, dest)


def rollback_checkpoint(v: Victim) -> Forgery:
    """Copy 000002's signed pretrained_model over 000004's."""
    _replace_folder(v.model(EARLIER), v.model(RELEASED))
    names = (EARLIER, RELEASED, "step 2")
    return Forgery(
        f"copied {EARLIER}'s signed folder over {RELEASED}'s",
        (v.verify(RELEASED, names), v.report(v.run, names)),
    )


def swap_checkpoints(v: Victim) -> Forgery:
    """Swap the signed pretrained_model folders of 000002 and 000004."""
    spare = v.run / "spare"
    shutil.move(v.model(RELEASED), spare)
    shutil.move(v.model(EARLIER), v.model(RELEASED))
    shutil.move(spare, v.model(EARLIER))
    names = (EARLIER, RELEASED, "step 2", "step 4")
    return Forgery(
        f"swapped the signed folders of {EARLIER} and {RELEASED}",
        (v.verify(RELEASED, names), v.verify(EARLIER, names), v.report(v.run, names)),
    )


# (e) an unsigned card record naming another checkpoint as released


def append_release_card(v: Victim, *, with_end: bool) -> Forgery:
    """Append a card record (written without any key) that calls 000002 the release."""
    chain = entries(v.ledger)
    model = v.model(EARLIER)
    card = Entry(
        chain[-1].ts,
        "card",
        "release",
        next(e for e in chain if e.kind == "card").payload
        | {
            "checkpoint": model.relative_to(v.run).as_posix(),
            "step": 2,
            "release": True,
            "card_digest": digest(json.loads(layout.card_path(model).read_text())),
            "signed": True,
        },
    )
    forged = [card]
    if with_end:
        end = next(e for e in chain if e.kind == "run.end")
        forged.append(end.edit(release_checkpoint=model.relative_to(v.run).as_posix()))
    rechain(v.ledger, [*chain, *forged])
    seqs = list(range(len(chain) + 1, len(chain) + len(forged) + 1))
    also = " and a run.end naming it" if with_end else ""
    return Forgery(
        f"appended a card record naming {EARLIER} as released (record {seqs[0]}){also}",
        (v.ledger_verify(seqs), v.report(v.run)),
    )


# (f) forged ledgers beside genuine checkpoints


def _forged_run(v: Victim, run_dir: Path) -> None:
    """A ledger in ``run_dir`` with every finding a 'pass' and the card records naming the genuine
    checkpoints, plus the evidence and artifact files its report checks."""
    chain = []
    for e in _without_anchors_after(entries(v.ledger), 0):
        if e.kind == "finding":
            e = e.edit(status="pass", message="all thresholds held")
        elif e.kind == "card":
            genuine = (v.run / e.payload["checkpoint"]).resolve()
            e = e.edit(checkpoint=Path(os.path.relpath(genuine, run_dir)).as_posix())
        chain.append(e)
    trustai_dir = layout.trustai_dir(run_dir)
    trustai_dir.mkdir(parents=True, exist_ok=True)
    rechain(layout.ledger_path(run_dir), chain)
    for seq, e in enumerate(chain, 1):
        if e.kind == "evidence":
            path = trustai_dir / layout.evidence_name(seq, e.payload["check_id"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(pretty_json(e.payload))
    artifacts = layout.trustai_dir(v.run) / layout.ARTIFACTS_DIR
    if artifacts.is_dir():
        shutil.copytree(artifacts, trustai_dir / layout.ARTIFACTS_DIR, dirs_exist_ok=True)


def plant_ledger_in_checkpoint(v: Victim) -> Forgery:
    """A forged ledger in checkpoints/000004/trustai/, then `trustai report checkpoints/000004`."""
    folder = v.run / layout.CHECKPOINTS_DIR / RELEASED
    _forged_run(v, folder)
    return Forgery(
        f"planted a forged all-pass ledger in checkpoints/{RELEASED}/trustai/ and reported on it",
        (v.report(folder),),
    )


def plant_ledger_in_model_folder(v: Victim) -> Forgery:
    """A forged ledger inside 000004's signed pretrained_model/trustai/, then a report on that folder."""
    _forged_run(v, v.model(RELEASED))
    return Forgery(
        f"planted a forged all-pass ledger in {RELEASED}'s signed model folder and reported on it",
        (v.report(v.model(RELEASED)),),
    )


def forged_run_elsewhere(v: Victim) -> Forgery:
    """A folder of its own whose forged card records name the genuine checkpoints."""
    elsewhere = v.run.parent / "forged-run"
    _forged_run(v, elsewhere)
    return Forgery(
        "a separate folder with a forged all-pass ledger naming the genuine checkpoints, reported on",
        (v.report(elsewhere),),
    )


# (g) laundering through trustai audit


def launder_without_signature(v: Victim, *, strip_card: bool) -> Forgery:
    """Change 000004's weights, delete model.sig (and the card, as LeRobot saved it), audit with the key."""
    model = v.model(RELEASED)
    tensor = nudge_weights(model)
    (model / "model.sig").unlink()
    if strip_card:
        shutil.rmtree(layout.card_dir(model))
        (model / "README.md").unlink()
    stripped = ", card and README" if strip_card else ""
    return Forgery(
        f"changed {tensor} of {RELEASED}, deleted model.sig{stripped}, ran `trustai audit --key`",
        (v.audit(RELEASED),),
    )


def launder_pickles(v: Victim) -> Forgery:
    """Plant pickle files next to 000004's weights, delete model.sig, audit with the key."""
    model = v.model(RELEASED)
    names = plant_pickles(model, v.run.parent / "payload-ran.marker")
    (model / "model.sig").unlink()
    return Forgery(
        f"planted {', '.join(names)} in {RELEASED}, deleted model.sig, ran `trustai audit --key`",
        (v.audit(RELEASED),),
    )


def launder_re_signed(v: Victim) -> Forgery:
    """Change 000004's weights and re-sign the folder with the (stolen) key, then audit it."""
    model = v.model(RELEASED)
    tensor = nudge_weights(model)
    sign_folder(model, v.governed.private_key)
    return Forgery(
        f"changed {tensor} of {RELEASED}, re-signed it with the key, ran `trustai audit --key`",
        (v.audit(RELEASED),),
    )


# (h) report on a run whose integrity fails


def report_on_tampered_file(v: Victim) -> Forgery:
    """Edit a signed file of a checkpoint (README claim, or one weight), report on the run."""
    model = v.model(v.rng.choice([EARLIER, RELEASED]))
    if v.rng.random() < 0.5:
        readme = own(model / "README.md")
        readme.write_text(readme.read_text() + "\nAll checks passed.\n")
        changed = "README.md"
    else:
        nudge_weights(model)
        changed = "model.safetensors"
    return Forgery(
        f"edited {layout.checkpoint_name(model)}/{changed}, reported on the run",
        (v.report(v.run, (changed,)),),
    )


def report_on_broken_chain(v: Victim) -> Forgery:
    """Edit one finding's status without recomputing anything, report on the run."""
    chain = entries(v.ledger)
    at = v.rng.choice([i for i, e in enumerate(chain, 1) if e.kind == "finding"])
    db = open_ledger_for_edit(v.ledger)
    payload = pretty_json(chain[at - 1].payload | {"status": "pass"})
    db.execute("UPDATE records SET payload = ? WHERE seq = ?", (payload, at))
    db.close()
    return Forgery(f"edited finding record {at} in place, reported on the run", (v.report(v.run),))


def report_on_edited_evidence_file(v: Victim) -> Forgery:
    """Edit one of the run's evidence files, report on the run."""
    files = sorted((layout.trustai_dir(v.run) / layout.EVIDENCE_DIR).glob("*.json"))
    path = own(v.rng.choice(files))
    path.write_text(path.read_text().replace('"error"', '"error_"', 1))
    return Forgery(f"edited the run's {path.name}, reported on the run", (v.report(v.run, (path.name,)),))


ATTACKS: dict[str, list[Attack]] = {
    "a": [append_pass_finding, edit_after_last_card, remove_after_last_card],
    "b": [truncate_to_earlier_card],
    "c": [lambda v: rewrite_finding(v, keep_anchors=True), lambda v: rewrite_finding(v, keep_anchors=False)],
    "d": [rollback_checkpoint, swap_checkpoints],
    "e": [lambda v: append_release_card(v, with_end=False), lambda v: append_release_card(v, with_end=True)],
    "f": [plant_ledger_in_checkpoint, plant_ledger_in_model_folder, forged_run_elsewhere],
    "g": [
        lambda v: launder_without_signature(v, strip_card=False),
        lambda v: launder_without_signature(v, strip_card=True),
        launder_pickles,
        launder_re_signed,
    ],
    "h": [report_on_tampered_file, report_on_broken_chain, report_on_edited_evidence_file],
}


@dataclass
class Outcome:
    """How the probes met one forgery: detected (by which probe), lost, or crashed."""

    what: str
    verdict: str
    by: str | None = None
    seen: list[str] = field(default_factory=list)  # what each probe did, when none detected it


def run_probe(probe: Probe) -> tuple[int, str]:
    """Run a probe's command; an exception escaping the command line is returned as a crash (exit -1)."""
    try:
        return trustai_here(*probe.args)
    except Exception as exc:  # the command line must turn every failure into an exit code
        return -1, f"Traceback (most recent call last): {type(exc).__name__}: {exc}"


def attempt(attack: Attack, victim: Victim, genuine: dict[str, bool]) -> Outcome:
    """Forge ``victim`` with ``attack`` and run its probes until one detects it."""
    forgery = attack(victim)
    seen = []
    for probe in forgery.probes:
        code, output = run_probe(probe)
        if "Traceback (most recent call last)" in output:
            return Outcome(forgery.what, "crashed", seen=[f"{probe.kind}: {output[-1500:]}"])
        named = probe.names_it(output)
        if code in probe.codes and named and genuine[probe.kind]:
            return Outcome(forgery.what, "detected", by=probe.kind)
        why = "" if named else ", naming nothing forged"
        why += "" if genuine[probe.kind] else ", but it refuses the genuine run too"
        seen.append(f"{probe.kind}: exit {code}{why}: {' '.join(output.split())[-400:]}")
    return Outcome(forgery.what, "lost", seen=seen)


@pytest.fixture(scope="session")
def genuine(
    governed: GovernedRun, dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, bool]:
    """Whether each probe accepts (exit 0) an untouched copy of the governed run; the audit goes last,
    since it appends to the copy."""
    work = tmp_path_factory.mktemp("forgery-genuine")
    v = Victim(private_run(governed.run_dir, work / "run"), governed, dataset, random.Random(0))
    probes = [v.ledger_verify([]), v.verify(EARLIER), v.verify(RELEASED), v.report(v.run)]
    return {probe.kind: run_probe(probe)[0] == 0 for probe in [*probes, v.audit(RELEASED)]}


def test_the_genuine_run_passes_every_probe(genuine: dict[str, bool]) -> None:
    assert all(genuine.values()), {kind: "refused" for kind, ok in genuine.items() if not ok}


@pytest.mark.parametrize("cls", sorted(ATTACKS))
def test_every_forgery_is_detected(
    cls: str, governed: GovernedRun, dataset: Path, genuine: dict[str, bool], tmp_path: Path
) -> None:
    rng = random.Random(f"{SCALE.seed}-forgery-{cls}")
    attacks = [rng.choice(ATTACKS[cls])] if SCALE.name == "quick" else ATTACKS[cls] * SCALE.forgery
    outcomes = []
    for i, attack in enumerate(attacks):
        trial = tmp_path / f"trial-{i}"
        victim = Victim(private_run(governed.run_dir, trial / "run"), governed, dataset, rng)
        try:
            outcomes.append(attempt(attack, victim, genuine))
        finally:
            shutil.rmtree(trial)
    fig = FIGURES.row(f"forgery-{cls}")
    verdicts = [o.verdict for o in outcomes]
    fig.trials += len(outcomes)
    fig.detected += verdicts.count("detected")
    fig.lost += verdicts.count("lost")
    fig.crashed += verdicts.count("crashed")
    by = sorted({o.by for o in outcomes if o.by})
    fig.notes.append(f"{CLASSES[cls]}; detected by: {', '.join(by) or 'nothing'}")
    fig.notes += [f"{o.verdict}: {o.what}" for o in outcomes if o.verdict != "detected"]
    failures = [
        f"{o.verdict}: {o.what}\n  " + "\n  ".join(o.seen) for o in outcomes if o.verdict != "detected"
    ]
    assert not failures, f"({cls}) {CLASSES[cls]}\n" + "\n".join(failures)


def test_the_trials_left_the_governed_run_as_it_was(governed: GovernedRun) -> None:
    # Runs after the trials: a forgery written through a hard link into the shared run would make later
    # trials of every family "detect" damage that is not theirs.
    for folder in governed.checkpoints:
        assert verify_checkpoint(folder, governed.public_key).ok, folder
