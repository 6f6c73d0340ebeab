import subprocess
import sys

import pytest
from typer.testing import CliRunner

from trustai.cli import app
from trustai.core.evidence import Evidence, Severity, Stage, Status
from trustai.core.gate import blocks
from trustai.errors import TrustaiUserError
from trustai.packs import Check, judge, load_pack, parse_pack, shipped_packs

GOOD = """\
name: mine
checks:
  - id: health
    audit: train.health
    stage: train
    thresholds:
      divergence_ratio: {max: 2.0}
      steps: {min: 1}
    severity: block
    references: [eu-ai-act:art15]
"""


def test_shipped_packs_validate():
    assert {"default", "eu-ai-act-high-risk"} <= set(shipped_packs())
    for name in shipped_packs():
        pack = load_pack(name)
        assert pack.checks, name
        assert all(c.references for c in pack.checks), name


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        (GOOD.replace("severity: block", "severity: blocker"), 9, "checks[0].severity"),
        (GOOD.replace("stage: train", "stage: training"), 5, "checks[0].stage"),
        (GOOD.replace("audit: train.health", "audit: train.nope"), 4, "checks[0].audit"),
        (GOOD.replace("{max: 2.0}", "{maximum: 2.0}"), 7, "checks[0].thresholds.divergence_ratio"),
        (GOOD.replace("eu-ai-act:art15", "eu-ai-act:art99"), 10, "checks[0].references[0]"),
        (GOOD.replace("stage: train", "stage: data"), 5, "checks[0].stage"),
        (GOOD + "    params: {window: 0}\n", 11, "checks[0].params.window"),
        (GOOD + "    colour: red\n", 11, "checks[0].colour"),
        (GOOD.replace("divergence_ratio:", "divergence_ratoi:"), 7, "checks[0].thresholds.divergence_ratoi"),
        (GOOD + "    inconclusive: pass\n", 11, "checks[0].inconclusive"),
    ],
)
def test_malformed_pack_names_file_line_and_key(text, line, key):
    with pytest.raises(TrustaiUserError) as err:
        parse_pack(text, "packs/mine.yaml")
    message = str(err.value)
    assert f"packs/mine.yaml:{line}" in message
    assert key in message


def test_a_threshold_on_a_metric_the_audit_never_produces_fails_validation():
    pack = (
        GOOD.replace("train.health", "robustness.closed_loop")
        .replace("stage: train", "stage: checkpoint")
        .replace("divergence_ratio", "success_rate_drp")
        .replace("steps: {min: 1}", "success_rate_clean: {min: 0.5}")
    )
    with pytest.raises(TrustaiUserError) as err:
        parse_pack(pack, "packs/pusht.yaml")
    message = str(err.value)
    assert "packs/pusht.yaml:7" in message and "no metric 'success_rate_drp'" in message
    assert "success_rate_drop" in err.value.fix  # the valid names
    parse_pack(pack.replace("success_rate_drp", "success_rate_drop"), "packs/pusht.yaml")


def test_invalid_yaml_and_wrong_shape():
    with pytest.raises(TrustaiUserError, match=r"x.yaml:3"):
        parse_pack("name: a\nchecks: [\n", "x.yaml")
    with pytest.raises(TrustaiUserError, match="mapping"):
        parse_pack("- just\n- a list\n", "x.yaml")


def test_validate_cli_exit_codes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("severity: block", "severity: blocker"))
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    ok = CliRunner().invoke(app, ["pack", "validate", str(good)])
    assert ok.exit_code == 0, ok.output
    out = subprocess.run(
        [sys.executable, "-m", "trustai", "pack", "validate", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert f"{bad}:9" in out.stderr and "checks[0].severity" in out.stderr
    assert "Traceback" not in out.stderr


def _evidence(**metrics):
    return Evidence(
        audit="train.health", audit_version="1", stage=Stage.TRAIN, check_id="health", metrics=metrics
    )


def test_judge_pass_fail_warn_error():
    check = Check.model_validate(parse_pack(GOOD, "g.yaml").checks[0].model_dump())
    assert judge(check, _evidence(divergence_ratio=1.0, steps=10)).status == Status.PASS
    failed = judge(check, _evidence(divergence_ratio=5.0, steps=10))
    assert failed.status == Status.FAIL and blocks(failed) and "divergence_ratio" in failed.message
    missing = judge(check, _evidence(steps=10))
    assert missing.status == Status.FAIL
    warn = judge(
        check.model_copy(update={"severity": Severity.WARN}), _evidence(divergence_ratio=5.0, steps=1)
    )
    assert warn.status == Status.WARN and not blocks(warn)
    broken = _evidence().model_copy(update={"error": "RuntimeError: boom"})
    errored = judge(check, broken)
    assert errored.status == Status.ERROR and blocks(errored)
