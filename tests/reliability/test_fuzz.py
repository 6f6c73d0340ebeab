"""Fuzzing with Hypothesis: the policy-pack loader, the card verifier and the ledger reader take
generated input (YAML, card.json content, ledger rows, ledger file bytes). Each either accepts it,
rejects it with TrustaiUserError, or reports a failed verification; nothing else escapes. A changed
card or ledger never verifies."""

import json
import sqlite3
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st

from tests.reliability.conftest import GovernedRun
from tests.reliability.figures import FIGURES, Figure
from tests.reliability.runs import ledger_rows, open_ledger_for_edit, private_checkpoint
from tests.reliability.scale import SCALE
from trustai.attest.verify import verify_checkpoint
from trustai.core.audit import get_audit, known_audits
from trustai.core.canonical import digest
from trustai.core.evidence import Severity, Stage
from trustai.core.ledger import Ledger
from trustai.errors import TrustaiUserError
from trustai.packs import parse_pack
from trustai.packs.regulatory import REFERENCES

TEXT_COLUMNS = ("ts", "kind", "stage", "payload", "payload_sha256", "prev_hash", "hash")


def fuzzed(test: Callable) -> Callable:
    """Hypothesis settings of the scale: a fixed number of examples, no deadline, no example database;
    derandomized in the quick run, seeded with the session seed in the full one."""
    configured = settings(
        max_examples=SCALE.fuzz,
        deadline=None,
        derandomize=SCALE.derandomize,
        database=None,
        suppress_health_check=list(HealthCheck),
    )(test)
    return configured if SCALE.derandomize else seed(SCALE.seed)(configured)


def examples(texts: list[str]) -> Callable[[Callable], Callable]:
    """Hypothesis ``@example`` for each of ``texts``: explicit examples run in every scale and seed."""

    def add(test: Callable) -> Callable:
        for text in reversed(texts):
            test = example(text)(test)
        return test

    return add


def run_counted(fig: Figure, target: Callable[[], bool]) -> None:
    """Count one example: ``target`` returns True when it rejected the input (TrustaiUserError counts
    too). A failed assertion is an unnoticed change, any other exception a crash; both are re-raised for
    Hypothesis to shrink."""
    fig.trials += 1
    try:
        rejected = target()
    except TrustaiUserError:
        rejected = True
    except AssertionError:  # the property failed: a change went unnoticed
        fig.lost += 1
        raise
    except Exception:
        fig.crashed += 1
        raise
    fig.detected += rejected


# -- policy packs --------------------------------------------------------------------------------------

# Whole numbers at and beyond what canonical JSON (RFC 8785) holds, which plain st.integers() rarely draws.
json_edge_integers = st.sampled_from([2**53 - 1, 2**53, -(2**53), 2**64, 10**30])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | json_edge_integers | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
numbers = st.integers() | json_edge_integers | st.floats() | st.text(max_size=6)


def _param_names() -> list[str]:
    return sorted({name for audit in known_audits() for name in get_audit(audit).Params.model_fields})


checks = st.fixed_dictionaries(
    {
        "id": st.from_regex(r"[a-z0-9][a-z0-9._-]{0,12}", fullmatch=True) | st.text(max_size=8),
        "audit": st.sampled_from(known_audits()) | st.text(max_size=14),
        "stage": st.sampled_from([s.value for s in Stage]) | st.text(max_size=8),
    },
    optional={
        "params": st.dictionaries(
            st.sampled_from(_param_names()) | st.text(max_size=8), json_values, max_size=3
        ),
        "thresholds": st.dictionaries(
            st.text(max_size=10),
            st.fixed_dictionaries({}, optional={"min": numbers, "max": numbers}) | json_values,
            max_size=3,
        ),
        "severity": st.sampled_from([s.value for s in Severity]) | st.text(max_size=6),
        "references": st.lists(st.sampled_from(sorted(REFERENCES)) | st.text(max_size=10), max_size=3),
        "timeout_s": numbers | st.sampled_from([float("inf"), 1e300, -1.0, 0.0]),
        "description": json_values,
        "extra": json_values,
    },
)
pack_documents = st.fixed_dictionaries(
    {"name": st.text(max_size=12) | json_values, "checks": st.lists(checks, max_size=4) | json_values},
    optional={
        "version": numbers,
        "description": json_values,
        "release_wait_s": numbers,
        "extra": json_values,
    },
)
SHIPPED = (resources.files("trustai.policies") / "default.yaml").read_text(encoding="utf-8")


@st.composite
def edited_shipped_pack(draw: st.DrawFn) -> str:
    """The shipped default pack with a few random spans replaced."""
    text = SHIPPED
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 20)))
        text = text[:start] + draw(st.text(max_size=12)) + text[end:]
    return text


pack_texts = (
    st.text(max_size=200)
    | pack_documents.map(lambda doc: yaml.safe_dump(doc, allow_unicode=True))
    | edited_shipped_pack()
)


# Packs whose every value validates but that canonical JSON cannot hold: tried first whatever the seed.
ONE_CHECK = "name: big\nchecks:\n  - {id: c, audit: robustness.adversarial, stage: checkpoint, "
UNDIGESTABLE_PACKS = [
    f"name: big\nversion: {2**53}\nchecks: []\n",
    f"name: big\nversion: {float(2**53)}\nchecks: []\n",
    ONE_CHECK + f"params: {{steps: {2**53}}}}}\n",
    ONE_CHECK + f"thresholds: {{m: {{max: {2**53 + 1}}}}}}}\n",
    'name: big\nchecks: []\ndescription: "\\ud800"\n',
]


def test_policy_pack_loader_accepts_or_refuses_cleanly() -> None:
    fig = FIGURES.row("fuzz-pack")

    @fuzzed
    @given(pack_texts)
    @examples(UNDIGESTABLE_PACKS)
    def check(text: str) -> None:
        def target() -> bool:
            pack = parse_pack(text, "fuzz.yaml")
            digest(pack.model_dump(mode="json"))  # a pack that loads is recorded in the ledger at run start
            for wait in (pack.release_wait_s, *(check.timeout_s for check in pack.checks)):
                threading.Lock().acquire(timeout=wait)  # and the runtime waits on its time limits
            return False

        run_counted(fig, target)

    check()
    fig.notes.append(f"{fig.trials - fig.detected} generated packs loaded, {fig.detected} refused")


# -- model cards -------------------------------------------------------------------------------------


@st.composite
def edited_card(draw: st.DrawFn, card: dict) -> Any:
    """``card`` with one value somewhere inside it replaced, deleted or added."""
    card = json.loads(json.dumps(card))
    node, path = card, []
    while isinstance(node, dict | list) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        node, path = node[key], [*path, key]
    if not path:
        return draw(json_values)
    parent = card
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "delete":
        del parent[path[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = draw(json_values)
    else:
        parent[path[-1]] = draw(json_values | st.integers(min_value=2**53) | st.text(min_size=1, max_size=3))
    return card


def test_card_verifier_reports_every_edit_and_never_crashes(governed: GovernedRun, tmp_path: Path) -> None:
    folder = private_checkpoint(governed.run_dir, tmp_path / "run")
    card_path = folder / "trustai" / "card.json"
    original = json.loads(card_path.read_text())
    fig = FIGURES.row("fuzz-card")

    @fuzzed
    @given(edited_card(original) | st.binary(max_size=300))
    def check(content: Any) -> None:
        raw = content if isinstance(content, bytes) else json.dumps(content).encode()
        card_path.write_bytes(raw)

        def target() -> bool:
            report = verify_checkpoint(folder, None)  # None: no signature step, so the card checks decide
            card_checks = [c for c in report.steps if not c.name.startswith("signature")]
            rejected = not all(c.ok for c in card_checks)
            try:
                same = not isinstance(content, bytes) and digest(content) == digest(original)
            except ValueError:
                same = False
            assert rejected or same, f"an edited card passed every card check: {raw[:300]!r}"
            return rejected

        run_counted(fig, target)

    check()
    fig.notes.append(f"{fig.detected} edited cards named by the card checks (signature not used)")


# -- the ledger --------------------------------------------------------------------------------------

stored_values = (
    st.none() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=20) | st.binary(max_size=20)
)


@st.composite
def row_edits(draw: st.DrawFn, seqs: int) -> list[tuple]:
    """A few edits of stored rows: set a column to any SQLite value, delete a row, insert a row."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "delete", "insert"]))
        seq = draw(st.integers(-2, seqs + 3) | st.integers(-(2**63), 2**63 - 1))
        if kind == "set":
            edits.append(("set", seq, draw(st.sampled_from(TEXT_COLUMNS)), draw(stored_values)))
        elif kind == "delete":
            edits.append(("delete", seq))
        else:
            edits.append(("insert", seq, *draw(st.tuples(*[stored_values] * len(TEXT_COLUMNS)))))
    return edits


def apply_edits(path: Path, edits: list[tuple]) -> None:
    """Apply ``row_edits`` as an attacker with file access would; edits SQLite rejects are skipped."""
    db = open_ledger_for_edit(path)
    for edit in edits:
        try:
            if edit[0] == "set":
                db.execute(f"UPDATE records SET {edit[2]} = ? WHERE seq = ?", (edit[3], edit[1]))
            elif edit[0] == "delete":
                db.execute("DELETE FROM records WHERE seq = ?", (edit[1],))
            else:
                db.execute(
                    f"INSERT INTO records (seq, {', '.join(TEXT_COLUMNS)}) VALUES (?{', ?' * 7})", edit[1:]
                )
        except sqlite3.Error:
            pass  # NOT NULL, duplicate key, datatype mismatch
    db.close()


def read_everything(path: Path) -> bool:
    """Open, verify and read the ledger as trustai does; True when it was refused or failed verify."""
    ledger = Ledger(path, create=False)
    try:
        report = ledger.verify()
        ledger.records()
        ledger.head()
        for seq in (1, 2, report.records):
            ledger.get(seq)
        return not report.ok
    finally:
        ledger.close()


@pytest.fixture(scope="module")
def ledger_template(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a small, valid, checkpointed ledger."""
    path = tmp_path_factory.mktemp("ledger") / "ledger.sqlite"
    ledger = Ledger(path)
    for i in range(6):
        ledger.append("stage", {"stage": "data", "step": i}, stage="data")
    ledger.close()
    return path.read_bytes()


def test_ledger_reader_names_every_row_edit_and_never_crashes(ledger_template: bytes, tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(ledger_template)
    original = ledger_rows(path)
    fig = FIGURES.row("fuzz-ledger")

    @fuzzed
    @given(row_edits(6))
    def check(edits: list[tuple]) -> None:
        for stale in tmp_path.glob("ledger.sqlite*"):
            stale.unlink()
        path.write_bytes(ledger_template)
        apply_edits(path, edits)
        rows = ledger_rows(path)
        # Dropping records from the end leaves a valid shorter chain: only a card's anchor catches that.
        changed = rows != original[: len(rows)]

        def target() -> bool:
            rejected = read_everything(path)
            assert rejected or not changed, f"edited rows verified: {edits}"
            return rejected

        run_counted(fig, target)

    check()


def test_ledger_reader_survives_damaged_file_bytes(ledger_template: bytes, tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    original = ledger_rows_of(ledger_template, tmp_path / "probe.sqlite")
    fig = FIGURES.row("fuzz-ledger")

    @fuzzed
    @given(
        st.lists(
            st.tuples(st.integers(0, len(ledger_template) - 1), st.integers(0, 255)), min_size=1, max_size=8
        ),
        st.none() | st.integers(0, len(ledger_template)),
    )
    def check(writes: list[tuple[int, int]], cut: int | None) -> None:
        data = bytearray(ledger_template)
        for at, value in writes:
            data[at] = value
        for stale in tmp_path.glob("ledger.sqlite*"):
            stale.unlink()
        path.write_bytes(bytes(data[:cut]))
        rows = ledger_rows(path)
        changed = rows is not None and rows != original[: len(rows)]

        def target() -> bool:
            rejected = read_everything(path)
            assert rejected or not changed, f"damaged ledger verified: {writes}, cut at {cut}"
            return rejected

        run_counted(fig, target)

    check()
    fig.notes.append(f"{fig.detected} edited rows or damaged files refused or failed verification")


def ledger_rows_of(data: bytes, scratch: Path) -> list[tuple] | None:
    """``ledger_rows`` of a ledger given as bytes."""
    scratch.write_bytes(data)
    return ledger_rows(scratch)
