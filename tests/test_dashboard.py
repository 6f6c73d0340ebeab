"""`trustai serve`: the read-only dashboard, in Chromium (Playwright) while a governed run is written,
and over HTTP: a new checkpoint appears, a finding shows its heat map, a tampered ledger turns the
integrity state red, nothing in the run is written, paths outside a run are refused, values are
escaped. Screenshots of the main pages go to /tmp/dashboard-shots/."""

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from benchmarks.dashboard_load import start_server, write_run
from trustai.attest.keys import generate_keypair
from trustai.core.evidence import Evidence, InputProvenance, Stage
from trustai.dashboard.app import create_app
from trustai.governance import Governance

SHOTS = Path("/tmp/dashboard-shots")
HOSTILE = "<script>document.title='owned'</script><img src=x onerror=alert(1)>"


def run_files(run_dir: Path) -> list[tuple[Path, int, int]]:
    """Every file of the run with size and mtime, SQLite's own -wal/-shm files of a reader aside."""
    skip = ("ledger.sqlite-wal", "ledger.sqlite-shm")
    return sorted(
        (p, p.stat().st_size, p.stat().st_mtime_ns)
        for p in run_dir.rglob("*")
        if p.is_file() and p.name not in skip
    )


def tamper(ledger: Path) -> None:
    """Turn a failed finding into a pass in place (the way someone with write access would)."""
    db = sqlite3.connect(ledger)
    db.execute("DROP TRIGGER records_no_update")
    rows = db.execute("SELECT seq, payload FROM records WHERE kind = 'finding'").fetchall()
    seq, payload = next((s, json.loads(p)) for s, p in rows if json.loads(p)["status"] == "fail")
    payload["status"] = "pass"
    db.execute("UPDATE records SET payload = ? WHERE seq = ?", (json.dumps(payload), seq))
    db.commit()
    db.close()


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    return tmp_path / "k.pem", tmp_path / "k.pub"


def test_dashboard_in_chromium_while_a_governed_run_is_written(tmp_path: Path, keys) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (make system-deps)"
    private, public = keys
    run_dir = tmp_path / "run"
    writer = write_run(run_dir, private, checkpoints=3, checks=3, fail_at=3)
    assert next(writer) == 10  # the first checkpoint is sealed; training goes on
    base, server = start_server(create_app([run_dir], public_key=public))
    SHOTS.mkdir(exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page: Page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/runs/0")
        page.wait_for_selector('tr[data-checkpoint="000010"]')
        assert page.locator("tr[data-checkpoint]").count() == 1

        assert next(writer) == 20  # a new checkpoint, sealed while the page is open
        page.wait_for_selector('tr[data-checkpoint="000020"]', timeout=30_000)
        for _ in writer:  # the last checkpoint fails its block checks; the run ends
            pass
        page.wait_for_selector('tr.first-blocked[data-checkpoint="000030"]', timeout=30_000)
        page.wait_for_selector('[data-integrity="verified"]', timeout=60_000)
        page.wait_for_function("document.querySelectorAll('div.chart .main-svg').length >= 3")
        assert "first blocked" in page.locator("tr.first-blocked").inner_text()
        page.screenshot(path=SHOTS / "run.png", full_page=True)
        untouched = run_files(run_dir)

        page.goto(base + "/")
        page.wait_for_selector('[data-integrity="verified"]')
        row = page.locator("tr[data-run='0']").inner_text()
        assert "blocked" in row and "dashboard-load v1" in row and "trustai/demo" in row and "act" in row
        page.screenshot(path=SHOTS / "runs.png", full_page=True)

        page.goto(base + "/runs/0")
        page.click('tr[data-checkpoint="000030"] a')
        page.wait_for_selector("#findings")
        assert "blocked by manifest-0" in page.inner_text("main")
        assert "Governance gate: **blocked**" in page.inner_text("#readme")
        page.screenshot(path=SHOTS / "checkpoint.png", full_page=True)

        page.click("#findings a:text('attributions-2')")
        heat_map = page.locator(".artifact img")
        heat_map.wait_for()
        assert page.evaluate("img => img.complete && img.naturalWidth > 0", heat_map.element_handle())
        assert "matches its recorded sha256" in page.inner_text(".artifact")
        page.screenshot(path=SHOTS / "finding.png", full_page=True)

        page.goto(base + "/runs/0")
        page.select_option("select[name=a]", "000010")
        page.select_option("select[name=b]", "000030")
        page.click("form button")
        page.wait_for_selector("#diff-findings")
        changed = page.locator("#diff-findings td.changed").all_inner_texts()
        assert "pass" in changed and "fail" in changed  # manifest-0 passed at step 10, failed at step 30
        page.screenshot(path=SHOTS / "diff.png", full_page=True)
        assert run_files(run_dir) == untouched  # browsing wrote nothing into the run

        tamper(run_dir / "trustai" / "ledger.sqlite")
        page.goto(base + "/")
        page.wait_for_selector('[data-integrity="failed"]', timeout=60_000)
        page.goto(base + "/runs/0")
        assert "ledger hash chain" in page.inner_text("#integrity-problems")
        page.screenshot(path=SHOTS / "tampered.png", full_page=True)
        browser.close()
    server.should_exit = True
    assert errors == []  # no script error, nothing the content policy blocked


@pytest.fixture
def hostile_run(tmp_path: Path, keys) -> Path:
    """A one-checkpoint run whose evidence holds markup, and a link pointing outside the run."""
    private, _ = keys
    run_dir = tmp_path / "run"
    for _ in write_run(run_dir, private, checkpoints=1, checks=1):
        pass
    gov = Governance(run_dir, "default")
    check = next(c for c in gov.pack.checks if c.id == "data-quality")
    evidence = Evidence(
        audit="data.quality",
        audit_version="1",
        stage=Stage.DATA,
        check_id=check.id,
        tables={"episodes": [{"task": HOSTILE}]},
        inputs=InputProvenance(step=0),
    )
    gov.record(check, evidence)
    gov.close()
    (tmp_path / "secret.txt").write_text("outside the run")
    (run_dir / "trustai" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    return run_dir


def test_http_reads_only_refuses_paths_outside_the_run_and_escapes(hostile_run: Path, keys) -> None:
    base, server = start_server(create_app([hostile_run], public_key=keys[1]))
    client = httpx.Client(base_url=base)
    finding = client.get("/api/runs/0").json()
    assert finding["checkpoints"] == ["000010"]
    from trustai.reports.run_status import run_status

    seq = run_status(hostile_run).run_findings[-1].record
    page = client.get(f"/runs/0/findings/{seq}").text
    assert HOSTILE not in page and "&lt;script&gt;document.title=" in page
    assert client.get("/runs/0/files/trustai/leak.txt").status_code == 404  # a link out of the run
    assert client.get("/runs/0/files/../secret.txt").status_code == 404
    assert client.get("/runs/0/files/%2e%2e/secret.txt").status_code == 404
    assert client.get("/runs/0/files/trustai/ledger.sqlite").status_code == 404  # not a kind it shows
    assert client.get("/runs/1").status_code == 404
    card = client.get("/runs/0/files/checkpoints/000010/pretrained_model/trustai/card.json")
    assert card.status_code == 200 and card.json()["run"]["step"] == 10
    assert "sandbox" in card.headers["content-security-policy"]
    assert "script-src 'self'" in client.get("/").headers["content-security-policy"]
    assert client.post("/runs/0").status_code == 405  # no route writes
    assert client.get("/", headers={"host": "attacker.example"}).status_code == 400  # DNS rebinding
    assert client.get("/static/plotly.min.js").content.startswith(b"/**")
    server.should_exit = True


def test_serve_refuses_a_folder_that_is_not_a_governed_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [Path(sys.executable).parent / "trustai", "serve", tmp_path], capture_output=True, text=True
    )
    assert result.returncode == 2 and "not a governed run" in result.stderr
