"""Compliance reports on a real governed LeRobot run (tiny ACT, CPU): every framework in every format,
byte-identical re-renders, a page Chromium opens without a console message, PDF headings, page one
(gate, integrity, coverage, what the provider must fill in) and tamper flags on it, tables inside the
A4 page, detail as much as was found, findings as sentences, system.yaml merging, the model card's
table cells, and bad input exiting 2."""

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from PIL import Image
from trustai.reports.blocks import BLOCKS
from trustai.reports.build import build_report, write_report
from trustai.reports.document import (
    COVERAGE,
    Cite,
    Content,
    Document,
    EvidenceView,
    Fact,
    Figure,
    Glance,
    Section,
    Table,
    Verdict,
)
from trustai.reports.findings import sentence
from trustai.reports.frameworks import FRAMEWORKS, MONITOR
from trustai.reports.render import chromium_args, write
from trustai.reports.run_status import run_status
from trustai.reports.system import SystemDescription, load_system
from trustai.reports.views import MAX_TABLE_COLUMNS
from trustai.training_hooks.lerobot_train import governed_train

from trustai.attest.card import render_readme
from trustai.attest.keys import generate_keypair
from trustai.cli import main
from trustai.cli.demo import demo_train_flags
from trustai.core.audit import Audit, Measurement, Metric, declare, register
from trustai.core.evidence import Stage
from trustai.core.ledger import Record
from trustai.core.run_record import EvidenceItem
from trustai.governance import Governance
from trustai.lerobot.synthetic import make_synthetic_dataset
from trustai.packs import parse_pack
from trustai.packs.regulatory import REFERENCES

BIN = Path(sys.executable).parent
ANNEX_IV = [f"Annex IV 1({p})" for p in "abcdefgh"] + [f"Annex IV 2({p})" for p in "abcdefgh"]
ANNEX_IV += [f"Annex IV {p}" for p in range(3, 10)]
MEASURES = ["MEASURE 2.1", *(f"MEASURE 2.{n}" for n in range(3, 14)), "MEASURE 3.1"]
CONTROLS = ["A.4", "A.5", "A.6.2", "A.6.2.4", "A.6.2.6", "A.6.2.7", "A.6.2.8", "A.7.3", "A.7.4", "A.8"]


@register
class CurvesAudit(Audit):
    """Stands in for the robustness, fairness and drift audits: a curve table, a per-group table and
    a PNG artifact, the shapes those audits record."""

    name = "testing.curves"
    stages = frozenset({Stage.CHECKPOINT, Stage.MONITOR})
    metrics = declare(
        {
            "accuracy_mean": Metric("fraction", "higher_is_better", "mean accuracy over severities"),
            "worst_group_rate": Metric("fraction", "higher_is_better", "lowest per-group rate"),
        }
    )

    def measure(self, ctx, params):
        png = ctx.artifact_dir / "heatmap.png"
        Image.new("RGB", (16, 8), (200, 40, 40)).save(png)
        return Measurement(
            metrics={"accuracy_mean": 0.8, "worst_group_rate": 0.5},
            tables={
                "accuracy_curve": [{"severity": s, "accuracy": 1 - 0.1 * s} for s in range(5)],
                "per_group": [{"group": "left", "rate": 0.5}, {"group": "right", "rate": 0.7}],
            },
            artifacts=[png],
        )


# A pack of its own, so the test does not move when the shipped packs gain audits. testing.curves
# stands in for robustness (its references cite Art. 15) and, at the monitor stage, for drift.
PACK = """
name: report-test
version: 1
checks:
  - id: data-quality
    audit: data.quality
    stage: data
    thresholds: {nonfinite_state_values: {max: 0}, timestamp_gaps: {max: 0}}
    severity: block
    references: [eu-ai-act:art10, eu-ai-act:annex-iv-2d, nist-ai-rmf:MEASURE-2.1, iso-42001:A.7.4]
  - id: datasheet
    audit: data.datasheet
    stage: data
    severity: info
    references: [eu-ai-act:annex-iv-2d]
  - id: training-health
    audit: train.health
    stage: train
    thresholds: {divergence_ratio: {max: 3.0}}
    severity: block
    references: [eu-ai-act:art15, eu-ai-act:annex-iv-2g, nist-ai-rmf:MEASURE-2.5]
  - id: provenance
    audit: provenance.manifest
    stage: checkpoint
    thresholds: {seed_recorded: {min: 1}, dataset_fingerprinted: {min: 1}}
    severity: block
    references: [eu-ai-act:art12, eu-ai-act:annex-iv-2a, iso-42001:A.7.5]
  - id: release-provenance
    audit: provenance.manifest
    stage: release
    thresholds: {git_commit_recorded: {min: 1}}
    severity: warn
    references: [eu-ai-act:art12, eu-ai-act:annex-iv-6, iso-42001:A.6.2.7]
  - id: planted-curves
    audit: testing.curves
    stage: checkpoint
    severity: warn
    thresholds: {accuracy_mean: {min: 0.9}}
    references: [eu-ai-act:art15, nist-ai-rmf:MEASURE-2.3, iso-42001:A.6.2.4]
  - id: planted-monitor
    audit: testing.curves
    stage: monitor
    severity: info
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A governed run (two sealed checkpoints) plus monitor-stage evidence appended after training."""
    tmp = tmp_path_factory.mktemp("reports")
    generate_keypair(tmp / "k.pem", tmp / "k.pub")
    dataset = make_synthetic_dataset(tmp / "data", repo_id="trustai/test", episodes=4, frames_per_episode=20)
    pack = parse_pack(PACK, "report-test.yaml")
    flags = demo_train_flags(dataset, tmp / "run", steps=8, save_freq=4)
    run_dir = governed_train(flags, pack, tmp / "k.pem")
    monitoring = Governance(run_dir, pack, signing_key=tmp / "k.pem")
    monitoring.run_stage(Stage.MONITOR)
    monitoring.close()
    return run_dir, tmp / "k.pub"


def copy_run(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("training_state"), symlinks=True)
    return dest


def trustai(*args):
    return subprocess.run([BIN / "trustai", *map(str, args)], capture_output=True, text=True)


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run the trustai CLI in this process (as its entry point does); return (exit code, stderr)."""

    def invoke(*args):
        monkeypatch.setattr(sys, "argv", ["trustai", *map(str, args)])
        with pytest.raises(SystemExit) as stopped:
            main()
        return stopped.value.code, capsys.readouterr().err

    return invoke


def pdf_text(pdf: Path, *pages: str) -> str:
    result = subprocess.run(["pdftotext", "-layout", *pages, pdf, "-"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_frameworks_cite_only_catalogued_references_known_blocks_and_fields():
    fields = set(SystemDescription.model_fields)
    for framework in FRAMEWORKS.values():
        keys = [r.key for r in framework.requirements]
        assert framework.fallback in keys and len(set(keys)) == len(keys)
        for req in (*framework.requirements, *framework.crosswalk):
            assert set(req.refs) <= set(REFERENCES), req.key
            assert set(req.blocks) <= set(BLOCKS), req.key
            assert set(req.fields) <= fields, req.key
            assert all(e == MONITOR or e in req.families for e in req.expects), req.key
    assert [r.key for r in FRAMEWORKS["eu-ai-act"].requirements] == ANNEX_IV
    assert [r.key for r in FRAMEWORKS["nist-ai-rmf"].requirements] == MEASURES
    assert {"A.4", "A.5", "A.8", "A.10"} <= {r.key for r in FRAMEWORKS["iso-42001"].requirements}
    crosswalk = [r.key for r in FRAMEWORKS["eu-ai-act"].crosswalk]
    assert crosswalk == ["Art. 9", "Art. 10", "Art. 12", "Art. 13", "Art. 14", "Art. 15", "Art. 72"]


@pytest.mark.parametrize(
    ("framework", "items"), [("eu-ai-act", ANNEX_IV), ("nist-ai-rmf", MEASURES), ("iso-42001", CONTROLS)]
)
def test_every_framework_renders_self_contained_html_and_md(run, tmp_path, framework, items):
    run_dir, pub = run
    doc = build_report(run_dir, framework, public_key=pub)
    html = write(doc, "html", tmp_path / "r.html")[0].read_text()
    md_files = write(doc, "md", tmp_path / "r.md")
    assert len(md_files) > 5 and all(p.suffix == ".png" for p in md_files[1:])  # figures beside it
    for text in (html, md_files[0].read_text()):
        assert [item for item in items if f"{item}:" not in text] == []
        assert f"{doc.records[0].hash[:12]}" in text  # run.start, cited by the manifest's facts
    assert "data:image/png;base64," in html
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html)  # nothing is fetched
    assert "http://" not in html and "https://" not in html


def test_the_same_run_renders_byte_identical_html_and_md(run, tmp_path):
    run_dir, pub = run
    written = []
    for name in ("a", "b"):
        doc = build_report(run_dir, "eu-ai-act", public_key=pub)
        html = write(doc, "html", tmp_path / name / "report.html")
        written.append([*html, *write(doc, "md", tmp_path / name / "report.md")])
    assert [p.relative_to(tmp_path / "a") for p in written[0]] == [
        p.relative_to(tmp_path / "b") for p in written[1]
    ]
    for a, b in zip(*written, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_eu_report_maps_evidence_to_annex_iv_and_articles(run):
    run_dir, pub = run
    doc = build_report(run_dir, "eu-ai-act", public_key=pub)
    sections = {s.key: s for s in doc.sections}
    homes = {view.title.split(" (")[0]: key for key, s in sections.items() for view in s.evidence}
    assert homes["data-quality"] == "Annex IV 2(d)"
    assert homes["training-health"] == "Annex IV 2(g)"
    assert homes["provenance"] == "Annex IV 2(a)"
    assert homes["planted-curves"] == "Annex IV 2(g)"  # no item claims family "testing": the fallback
    assert homes["planted-monitor"] == "Annex IV 9"  # monitor-stage evidence: post-market monitoring
    figures = {f.name: f for f in doc.figures()}
    assert any(name.endswith("table-loss_curve") for name in figures)
    assert any(name.endswith("table-accuracy_curve") for name in figures)
    assert any(name.endswith("table-per_group") for name in figures)
    artifact = next(f for name, f in figures.items() if "artifact" in name)
    heatmap = next((run_dir / "trustai" / "artifacts").glob("checkpoint-8-planted-curves/heatmap.png"))
    assert artifact.png == heatmap.read_bytes() and "(checked)" in artifact.caption
    assert all(f.cites for f in doc.figures())
    for section in doc.sections:
        tables = [*section.content.tables, *(t for v in section.evidence for t in v.content.tables)]
        assert all(t.cites for t in tables if t.rows), (section.key, [t.title for t in tables if not t.cites])
    architecture = sections["Annex IV 2(c)"].content
    assert any(f.label == "Parameters" for f in architecture.facts)
    assert any(f.label == "Hardware" for f in architecture.facts)
    assert any("robustness" in g for g in sections["Annex IV 2(g)"].gaps)
    assert any("provider" in g and "intended_purpose" in g for g in sections["Annex IV 1(a)"].gaps)
    crosswalk = {row[0].split("\n")[0]: row for row in doc.crosswalk.rows}
    assert "planted-curves" in crosswalk["Art. 15"][1]  # from the check's policy references
    assert "data-quality" in crosswalk["Art. 10"][1] and "fairness" in crosswalk["Art. 10"][4]
    assert "planted-monitor" in crosswalk["Art. 72"][1]
    assert "hash-chained event log" in crosswalk["Art. 12"][2]
    assert not doc.tampered and doc.cover[-1].value.startswith("trustai ")


def test_page_one_states_gate_integrity_coverage_and_what_the_provider_must_fill(run):
    run_dir, pub = run
    doc = build_report(run_dir, "eu-ai-act", public_key=pub)
    glance, sections = doc.glance, {s.key: s for s in doc.sections}
    assert glance.gate == run_status(run_dir).gate.verdict.value == "warn"  # as `trustai status` says
    assert (
        "warnings from planted-curves" in glance.gate_detail and "released checkpoint" in glance.gate_detail
    )
    assert glance.integrity == "verified"
    assert glance.coverage == {state: sum(s.status == state for s in doc.sections) for state in COVERAGE}
    # Evidence exists for Annex IV 2(g), but planted-curves warned there: failing, not green.
    assert sections["Annex IV 2(g)"].status == "failing" and sections["Annex IV 2(g)"].records > 0
    assert "failing: " in glance.coverage_detail and "Annex IV 2(g)" in glance.coverage_detail
    attention = {row[0]: row for row in glance.attention.rows}
    assert attention["planted-curves"][2] == "Accuracy mean 0.8 fell below the minimum 0.9 (warning)"
    provider = {f.label: f.value for f in glance.provider}
    assert "intended_purpose" in provider["system.yaml"] and "consent" in provider["Datasheet answers"]


def test_detail_follows_what_was_found(run):
    run_dir, pub = run
    doc = build_report(run_dir, "eu-ai-act", public_key=pub)
    views = {v.title: v for s in doc.sections for v in s.evidence}
    # The latest record of each check is in the appendix: in full when it did not pass, in summary when
    # it did; an earlier one that did not pass briefly; earlier passes are one row each.
    assert views["planted-curves (checkpoint, step 8)"].detail == "full"
    assert views["training-health (train, step 8)"].detail == "summary"
    assert views["planted-curves (checkpoint, step 4)"].detail == "brief"
    assert "training-health (train, step 4)" not in views
    assert {(row[0], row[1]) for row in doc.other_evidence.rows} == {
        ("training-health", "train, step 4"),
        ("provenance", "checkpoint, step 4"),
    }
    tables = [t for s in doc.sections for v in s.evidence for t in v.content.tables]
    assert tables and max(len(t.columns) for t in tables) <= MAX_TABLE_COLUMNS
    assert all(row[2] in ("pass", "warn", "fail", "error", "inconclusive") for row in doc.other_evidence.rows)


def test_coverage_is_passing_only_when_every_check_behind_an_item_held():
    def status(outcomes: list[str], gaps: list[str] = []) -> str:  # noqa: B006 - read only
        return Section("k", "t", "a", outcomes=outcomes, gaps=gaps).status

    assert status(["pass", "pass"]) == "passing"
    assert status(["pass", "warn"]) == status(["fail", "error", "inconclusive"]) == "failing"
    assert status(["pass", "error"], ["a gap"]) == "error"
    assert status(["inconclusive"], ["a gap"]) == "inconclusive"
    assert status(["pass"], ["a gap"]) == status([], ["a gap"]) == "missing"


def _judged(status: str, severity: str, evidence: dict | None = None, **finding) -> EvidenceItem:
    def record(seq: int, kind: str, payload: dict) -> Record:
        return Record(seq, "t", kind, "checkpoint", payload, "0" * 64, "0" * 64, f"{seq:064d}")

    payload = {"check_id": "corruptions", "audit": "robustness.corruptions", "stage": "checkpoint"}
    found = {"check_id": "corruptions", "status": status, "severity": severity, **finding}
    return EvidenceItem(record(5, "evidence", payload | (evidence or {})), record(6, "finding", found))


def test_findings_read_as_sentences_with_errors_cleaned():
    broken = {"metric": "mean_action_deviation", "op": "max", "limit": 0.2, "value": 0.31, "held": False}
    assert (
        sentence(_judged("fail", "block", thresholds=[broken]))
        == "corruptions: mean action deviation 0.31 exceeded the limit 0.2 (fail, blocks release)"
    )
    error = "TrustaiUserError: data/x: no held-out episodes\nHow to fix: pass holdout_episodes"
    assert sentence(
        _judged("error", "block", {"error": error}, message=f"audit did not complete: {error}")
    ) == (
        "corruptions: the audit did not complete: data/x: no held-out episodes; how to fix: pass "
        "holdout_episodes (error, blocks release)"
    )
    assert sentence(_judged("error", "warn", {"error": "ValueError: bad\n value"}), lead=False) == (
        "The audit did not complete: bad; value (ValueError) (error, warning)"
    )
    unmeasured = _judged("inconclusive", "block", message="could not measure: no frame was decoded")
    assert (
        sentence(unmeasured)
        == "corruptions: could not measure: no frame was decoded (inconclusive, blocks release)"
    )
    held = {**broken, "value": 0.1, "held": True}
    assert (
        sentence(_judged("pass", "block", thresholds=[held]))
        == "corruptions: mean action deviation 0.1 ≤ 0.2 held (pass)"
    )


def test_model_card_table_keeps_a_multi_line_finding_in_its_cell(run):
    run_dir, _ = run
    card = json.loads(
        (run_dir / "checkpoints" / "000008" / "pretrained_model" / "trustai" / "card.json").read_text()
    )
    findings = card["governance"]["findings"]
    findings[0]["message"] = "audit did not complete: ValueError: a | b\n  second line"
    tokens = MarkdownIt("commonmark").enable("table").parse(render_readme(card))
    rows = [i for i, t in enumerate(tokens) if t.type == "tr_open"]
    assert len(rows) == len(findings) + 1  # the header and one row per finding: no row was split
    first = [t for t in tokens[rows[1] :] if t.type == "inline"][:6]
    cell_text = "".join(c.content for c in first[4].children)
    assert cell_text == "audit did not complete: ValueError: a | b second line"


def test_system_yaml_is_merged_and_malformed_ones_name_file_and_line(run, tmp_path, cli):
    run_dir, pub = run
    system = tmp_path / "system.yaml"
    assert cli("report", "--init-system", system)[0] == 0
    text = system.read_text()
    template = load_system(system)[0]
    assert template == SystemDescription()  # the template is all blanks
    assert all(f"\n{name}:" in text for name in SystemDescription.model_fields)
    code, err = cli("report", "--init-system", system)
    assert code == 2 and "already exists" in err
    filled = text.replace("intended_purpose: ~", "intended_purpose: Pick and place of boxes.")
    filled = filled.replace("  name: ~\n  address", "  name: Acme Robotics\n  address", 1)
    system.write_text(filled)
    doc = build_report(run_dir, "eu-ai-act", system=system, public_key=pub)
    point = next(s for s in doc.sections if s.key == "Annex IV 1(a)")
    stated = [f for f in point.content.facts if "system.yaml" in f.source]
    assert any(f.value == "Pick and place of boxes." for f in stated)
    assert not any("intended_purpose" in g for g in point.gaps)
    assert any("Acme Robotics" in f.value for f in doc.cover)
    system.write_text(filled + "\nintended_purpos: typo\n")
    code, err = cli("report", run_dir, "--system", system)
    assert code == 2 and f"{system}:{len(filled.splitlines()) + 2}" in err and "intended_purpos" in err


def test_report_on_a_checkpoint_covers_evidence_up_to_its_step(run):
    run_dir, pub = run
    doc = build_report(run_dir / "checkpoints" / "000004", "nist-ai-rmf", public_key=pub)
    assert doc.subtitle.endswith("checkpoints/000004/pretrained_model (step 4)")
    steps = {v.summary for s in doc.sections for v in s.evidence}
    assert not any("step 8" in summary or "stage release" in summary for summary in steps)
    assert not any(v.name.startswith("checkpoints/000008") for v in doc.verdicts)


def test_html_opens_in_chromium_without_console_messages(run, tmp_path):
    run_dir, pub = run
    page = write_report(run_dir, "eu-ai-act", "html", tmp_path / "report.html", public_key=pub)[0]
    shot = tmp_path / "shot.png"
    command = [
        *chromium_args(tmp_path / "profile"),
        "--enable-logging=stderr",
        "--v=0",
        f"--screenshot={shot}",
        "--window-size=1200,1600",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []  # a blocked request (CSP) or a script error would log here
    image = Image.open(shot).convert("RGB")
    assert image.getcolors(maxcolors=1) is None  # more than one colour: something was drawn


def test_pdf_has_every_annex_iv_heading_and_states_verification_on_page_one(run, tmp_path):
    run_dir, pub = run
    pdf = tmp_path / "report.pdf"
    result = trustai("report", run_dir, "--format", "pdf", "-o", pdf, "--public-key", pub)
    assert result.returncode == 0, result.stderr
    text = pdf_text(pdf)
    missing = [p for p in ANNEX_IV if f"{p}:" not in text]
    assert missing == []
    first = pdf_text(pdf, "-f", "1", "-l", "1")
    # Page one leads with the three verdicts, then what stops release and what the provider must fill.
    assert (
        first.index("Gate") < first.index("Integrity") < first.index("Coverage") < first.index("About this")
    )
    assert "VERIFIED" in first and "checks of trustai verify" in first and "sha256:" in first
    assert "planted-curves" in first and "Accuracy mean 0.8 fell below the minimum 0.9" in first
    assert "system.yaml" in first and "intended_purpose" in first and "Datasheet answers" in first
    assert "INTEGRITY FAILURE" not in text and "TrustaiUserError" not in text
    # Every word lies on the A4 page: no table runs off its right edge.
    bbox = pdf_text(pdf, "-bbox")
    width = float(re.search(r'<page width="([\d.]+)"', bbox).group(1))
    assert max(float(x) for x in re.findall(r'xMax="([\d.]+)"', bbox)) <= width


def _flip_evidence_byte(copy: Path) -> str:
    evidence = copy / "checkpoints" / "000004" / "pretrained_model" / "trustai" / "evidence"
    path = sorted(evidence.glob("*.json"))[0]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return path.name


def _edit_ledger_record(copy: Path) -> str:
    db = sqlite3.connect(copy / "trustai" / "ledger.sqlite", isolation_level=None)
    db.execute("DROP TRIGGER records_no_update")
    seq, payload = db.execute(
        """SELECT seq, payload FROM records WHERE payload LIKE '%"stage":"data"%' ORDER BY seq"""
    ).fetchone()
    forged = payload.replace('"stage":"data"', '"stage":"dada"')
    db.execute("UPDATE records SET payload = ? WHERE seq = ?", (forged, seq))
    db.close()
    return f"record {seq} "


@pytest.mark.parametrize("tamper", [_flip_evidence_byte, _edit_ledger_record])
def test_tampered_run_is_flagged_on_the_first_page(run, tmp_path, tamper):
    run_dir, pub = run
    copy = copy_run(run_dir, tmp_path / "run")
    named = tamper(copy)
    doc = build_report(copy, "eu-ai-act", public_key=pub)
    assert doc.tampered
    first = pdf_text(write(doc, "pdf", tmp_path / "report.pdf")[0], "-f", "1", "-l", "1")
    assert "INTEGRITY FAILURE" in first and named in first
    md = write(doc, "md", tmp_path / "report.md")[0].read_text()
    assert "INTEGRITY FAILURE" in md.split("## About this report")[0]
    assert doc.glance.integrity == "failed" and named in doc.glance.integrity_detail + first


def test_an_altered_artifact_is_withheld_and_flagged(run, tmp_path):
    run_dir, pub = run
    copy = copy_run(run_dir, tmp_path / "run")
    heatmap = copy / "trustai" / "artifacts" / "monitor-0-planted-monitor" / "heatmap.png"
    heatmap.write_bytes(heatmap.read_bytes() + b"\0")
    doc = build_report(copy, "nist-ai-rmf", public_key=pub)
    assert doc.tampered
    assert any("monitor-0-planted-monitor/heatmap.png" in p for v in doc.verdicts for p in v.problems)
    monitor = next(s for s in doc.sections if s.key == "MEASURE 2.4")
    withheld = [f for v in monitor.evidence for f in v.content.facts if f.label == "Artifact withheld"]
    shown = [f for v in monitor.evidence for f in v.content.figures if "artifact" in f.name]
    assert len(withheld) == 1 and shown == []


def test_without_a_key_signatures_are_not_checked(run, monkeypatch, tmp_path):
    run_dir, _ = run
    monkeypatch.setenv("TRUSTAI_HOME", str(tmp_path))  # no default key there
    doc = build_report(run_dir, "eu-ai-act")
    assert doc.glance.integrity == "not fully checked" and not doc.tampered
    assert "no public key given or found" in doc.glance.integrity_detail


def test_bad_input_exits_2_with_one_message_and_no_traceback(run, tmp_path):
    run_dir, _ = run
    result = trustai("report", run_dir, "--framework", "gdpr")
    assert result.returncode == 2 and "unknown framework 'gdpr'" in result.stderr
    assert "Traceback" not in result.stderr and "eu-ai-act" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "docx"], "unknown format 'docx'"),
        (["--public-key", "/nonexistent/key.pub"], "public key not found"),
        (["--system", "/nonexistent/system.yaml"], "system description not found"),
        (["--system", "LIST"], "must be a mapping"),
        (["--system", "BROKEN"], "not valid YAML"),
        (["--framework", "nist-ai-rmf", "--output", "x.pdf", "--format", "odt"], "unknown format 'odt'"),
    ],
)
def test_bad_options_exit_2(run, tmp_path, cli, args, message):
    run_dir, _ = run
    (tmp_path / "LIST").write_text("- just\n- a list\n")
    (tmp_path / "BROKEN").write_text("name: [unclosed\n")
    args = [str(tmp_path / a) if a in ("LIST", "BROKEN") else a for a in args]
    code, err = cli("report", run_dir, *args)
    assert code == 2 and message in err


def test_folders_no_ledger_governs_exit_2(tmp_path, cli):
    code, err = cli("report", tmp_path)
    assert code == 2 and "no trustai ledger" in err
    code, err = cli("report", tmp_path / "missing")
    assert code == 2 and "no such run folder" in err


# Markdown that each value of a report could smuggle in: a block marker first, then inline markup.
BLOCK_MARKERS = ["# ", "- ", "1. ", "> ", "    ", "=== ", "```", "<div>", "+ ", "2) "]
HOSTILE_MARKDOWN = (
    "a | b\n## heading <script>alert(1)</script> [link](http://evil.example) ![x](http://evil.example/x.png)"
    " <http://evil.example> `code` **bold** _em_ ~~gone~~ $x$ &amp; \\| [^1] #end ##"
)


def _hostile_document() -> tuple[Document, list[str]]:
    """A Document with hostile Markdown in every text a report shows; also returns those texts."""
    texts: list[str] = []

    def bad() -> str:
        texts.append(BLOCK_MARKERS[len(texts) % len(BLOCK_MARKERS)] + HOSTILE_MARKDOWN)
        return texts[-1]

    record = Record(
        seq=3,
        ts=bad(),
        kind="finding",
        stage=bad(),
        payload={"check_id": bad()},
        payload_sha256="0" * 64,
        prev_hash="0" * 64,
        hash=bad(),
    )
    cite = Cite(3, record.hash, bad())

    def content() -> Content:
        table = Table(bad(), [bad(), bad()], [[bad(), bad()]], [cite], note=bad())
        figure = Figure("figure-1", bad(), b"png", bad(), [cite])
        return Content([Fact(bad(), bad(), bad(), [cite])], [table], [figure])

    view = EvidenceView("e-1", bad(), bad(), bad(), cite, content())
    section = Section(bad(), bad(), bad(), content(), [view], Table(bad(), [bad()], [[bad()]]), [bad()])
    glance = Glance(
        gate="blocked", gate_detail=bad(), integrity="failed", integrity_detail=bad(),
        coverage={"failing": 1}, coverage_detail=bad(),
        attention=Table(bad(), [bad(), bad()], [[bad(), bad()]], [cite], note=bad()),
        provider=[Fact(bad(), bad(), bad(), [cite])],
    )  # fmt: skip
    doc = Document(
        framework="eu-ai-act", title=bad(), intro=bad(), subtitle=bad(), glance=glance,
        cover=[Fact(bad(), bad(), bad(), [cite])],
        verdicts=[Verdict(bad(), "failed", (bad(), bad()))],
        sections=[section], crosswalk=Table(bad(), [bad()], [[bad()]]), records=[record],
        other_evidence=Table(bad(), [bad()], [[bad()]], [cite]),
    )  # fmt: skip
    return doc, texts


def _shown_text(tokens: list) -> str:
    """The text a Markdown reader sees, inline by inline (``<br>`` read as a line break)."""
    inlines = []
    for token in tokens:
        if token.type == "inline":
            inlines.append(
                "".join("\n" if c.content == "<br>" else c.content for c in token.children if c.content)
            )
    return "\0".join(inlines)


def test_markdown_escapes_every_value_and_keeps_the_report_structure(tmp_path):
    doc, texts = _hostile_document()
    markdown = write(doc, "md", tmp_path / "report.md")[0].read_text()
    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(markdown)
    shown = _shown_text(tokens)
    # Every value reads back exactly as it was (blanks leading a value dropped): no markup took effect.
    assert [t for t in texts if t.lstrip(" \t") not in shown] == []
    kinds = [t.type for t in tokens]
    # Title; about, coverage, the item, crosswalk; appendix A with the item and its evidence; B, C, D.
    headings = ["h1", "h2", "h2", "h2", "h2", "h2", "h3", "h4", "h2", "h2", "h2"]
    assert [t.tag for t in tokens if t.type == "heading_open"] == headings
    assert kinds.count("blockquote_open") == 1 and kinds.count("bullet_list_open") == 2  # tamper note, gaps
    assert not {"ordered_list_open", "code_block", "fence", "hr", "html_block"} & set(kinds[1:])
    # Verdicts, attention, provider, cover, coverage; the item's checks, facts, table; crosswalk; the
    # evidence's facts and table; other evidence, integrity, ledger records.
    assert kinds.count("table_open") == 14
    inline = [c for t in tokens if t.type == "inline" for c in t.children]
    anchor = doc.sections[0].anchor
    assert {c.content for c in inline if c.type == "html_inline"} == {"<br>", f'<a id="{anchor}">', "</a>"}
    assert {c.attrs["href"] for c in inline if c.type == "link_open"} == {f"#{anchor}"}
    assert {c.attrs["src"] for c in inline if c.type == "image"} == {"report-figures/figure-1.png"}
    assert not any(c.type in ("s_open", "code_inline") for c in inline)


def test_markdown_leaves_ordinary_text_as_it_is(tmp_path):
    doc, _ = _hostile_document()
    ordinary = "accuracy_mean 0.93 (n=12) for A.6.2: -0.5 m/s, 1.5 m, snake_case and R&D"
    doc.intro = ordinary
    markdown = write(doc, "md", tmp_path / "report.md")[0].read_text()
    assert f"\n{ordinary}\n" in markdown
