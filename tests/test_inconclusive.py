"""A check that could not measure what its thresholds are about is ``inconclusive``, never ``pass``:
judging and the gate on hand-made evidence, then real audits that cannot measure (a closed loop that
never succeeds, a policy that ignores its inputs, cameras with no decoded frame pair, no held-out
episodes) and one that can (a frozen camera in a video dataset). Audits declare every metric they emit."""

from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import BaseModel
from trustai.audits.explainability import AttributionParams
from trustai.audits.robustness import ClosedLoopParams, CorruptionParams, Perturbation

from tests.planted_faults import Faults, make_faulty_dataset
from tests.policies_fixtures import features_dataset, tiny_act
from tests.test_robustness import pusht_policy
from trustai.core.audit import (
    Audit,
    AuditContext,
    Measurement,
    Metric,
    NoParams,
    UndeclaredMetricError,
    declare,
    get_audit,
    known_audits,
)
from trustai.core.evidence import Evidence, Finding, Severity, Stage, Status
from trustai.core.gate import Verdict, blocks, gate
from trustai.lerobot.adapter import PolicyAdapter
from trustai.packs import Check, judge
from trustai.runtime.measure import measure_with_limit


def evidence(**fields: Any) -> Evidence:
    return Evidence(
        audit="robustness.closed_loop", audit_version="1", stage=Stage.CHECKPOINT, check_id="c", **fields
    )


def check(thresholds: dict[str, dict[str, float]], **fields: Any) -> Check:
    return Check(
        id="c",
        audit="robustness.closed_loop",
        stage=Stage.CHECKPOINT,
        thresholds=thresholds,
        severity=fields.pop("severity", Severity.BLOCK),
        **fields,
    )


DROP = {"success_rate_drop": {"max": 0.2}}


def test_ordinary_evidence_stores_no_new_fields() -> None:
    stored = evidence(metrics={"success_rate_drop": 0.0}).canonical()
    assert not {"inconclusive", "inconclusive_metrics", "exceeds"} & set(stored)
    assert Evidence.model_validate(stored).canonical() == stored
    unmeasured = evidence(inconclusive="no frames", inconclusive_metrics=["x"], exceeds={"y": 0.5})
    assert Evidence.model_validate(unmeasured.canonical()) == unmeasured


def test_an_inconclusive_measurement_never_passes_and_blocks_by_default() -> None:
    measured = evidence(metrics={"success_rate_drop": 0.0}, inconclusive="clean success rate 0.00")
    finding = judge(check(DROP), measured)
    assert finding.status == Status.INCONCLUSIVE and blocks(finding)
    assert finding.message == "could not measure: clean success rate 0.00"
    assert finding.thresholds == []  # nothing was judged
    assert gate([finding]).verdict == Verdict.BLOCKED
    assert judge(check(DROP), evidence(metrics={"success_rate_drop": 0.0})).status == Status.PASS


@pytest.mark.parametrize(
    ("setting", "verdict"),
    [(None, Verdict.BLOCKED), (Severity.WARN, Verdict.WARN), (Severity.INFO, Verdict.PASS)],
)
def test_the_pack_says_how_much_an_inconclusive_block_check_matters(
    setting: Severity | None, verdict: Verdict
) -> None:
    finding = judge(check(DROP, inconclusive=setting), evidence(inconclusive="no rollouts succeeded"))
    assert finding.status == Status.INCONCLUSIVE
    assert gate([finding]).verdict == verdict
    failed = judge(check(DROP, inconclusive=setting), evidence(metrics={"success_rate_drop": 0.5}))
    assert failed.status == Status.FAIL and gate([failed]).verdict == Verdict.BLOCKED


def test_only_thresholds_on_unmeasured_metrics_are_inconclusive() -> None:
    limits = {"success_rate_drop": {"max": 0.2}, "worst_success_rate": {"min": 0.5}}
    unmeasured = dict(inconclusive="too little success", inconclusive_metrics=["success_rate_drop"])
    failed = judge(check(limits), evidence(metrics={"worst_success_rate": 0.0}, **unmeasured))
    assert failed.status == Status.FAIL and "worst_success_rate" in failed.message  # measured and violated
    held = judge(check(limits), evidence(metrics={"worst_success_rate": 0.9}, **unmeasured))
    assert held.status == Status.INCONCLUSIVE and "success_rate_drop (too little success)" in held.message
    other = judge(
        check({"worst_success_rate": {"min": 0.5}}),
        evidence(metrics={"worst_success_rate": 0.9}, **unmeasured),
    )
    assert other.status == Status.PASS


@pytest.mark.parametrize(
    ("threshold", "status"),
    [({"min": 0.02}, Status.PASS), ({"min": 0.05}, Status.INCONCLUSIVE), ({"max": 0.01}, Status.FAIL)],
)
def test_a_metric_known_only_to_exceed_a_bound(threshold: dict[str, float], status: Status) -> None:
    """Nothing broke up to ε = 0.031: the breaking ε is above it. A min at or below the bound holds, a
    max at or below it is violated, anything else is unknown."""
    unbroken = evidence(metrics={"min_breaking_epsilon": None}, exceeds={"min_breaking_epsilon": 8 / 255})
    finding = judge(check({"min_breaking_epsilon": threshold}), unbroken)
    assert finding.status == status
    if status == Status.FAIL:
        assert "min_breaking_epsilon=> 0.0313725 violates max 0.01" in finding.message


def test_an_audit_that_emits_an_undeclared_metric_raises() -> None:
    class Sloppy(Audit):
        name = "test.sloppy"
        stages = frozenset({Stage.DATA})
        metrics = declare(
            {"rows": Metric("count", "neutral", "rows"), "share_<input>": Metric("", "neutral", "")}
        )

        def measure(self, ctx: AuditContext, params: BaseModel) -> Measurement:
            return Measurement(metrics={"rows": 1, "share_top": 0.5, "rowz": 2})

    with pytest.raises(UndeclaredMetricError, match="rowz") as caught:
        Sloppy().measure(AuditContext(stage=Stage.DATA, artifact_dir=Path(".")), NoParams())
    assert "share_top" not in str(caught.value)


def test_every_declared_metric_says_which_way_is_better() -> None:
    for name in known_audits():
        for metric, declared in get_audit(name).metrics.items():
            assert declared.direction in ("higher_is_better", "lower_is_better", "neutral"), (name, metric)
            assert declared.unit is not None and declared.meaning is not None, (name, metric)


# -- real audits that cannot measure ------------------------------------------------------------------


def run(
    audit: str, tmp_path: Path, thresholds: dict, params: dict, **context: Any
) -> tuple[Evidence, Finding]:
    """The audit through the runtime (measure_with_limit), judged by a block check."""
    stage = Stage.DATA if audit == "data.quality" else Stage.CHECKPOINT
    rule = Check(
        id="c", audit=audit, stage=stage, thresholds=thresholds, params=params, severity=Severity.BLOCK
    )
    ctx = AuditContext(stage=stage, artifact_dir=tmp_path / "artifacts", **context)
    measured = measure_with_limit(rule, ctx, tmp_path)
    assert measured.error is None, measured.error
    return measured, judge(rule, measured)


def test_a_closed_loop_that_never_succeeds_is_inconclusive(tmp_path: Path) -> None:
    params = ClosedLoopParams(episodes=1, max_steps=8, perturbations=[Perturbation(corruption="occlusion")])
    measured, finding = run(
        "robustness.closed_loop", tmp_path, DROP, params.model_dump(), policy=pusht_policy()
    )
    assert measured.metrics["success_rate_clean"] == 0.0 and measured.metrics["success_rate_drop"] == 0.0
    assert finding.status == Status.INCONCLUSIVE and blocks(finding)
    assert "below min_clean_success 0.2" in finding.message


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return features_dataset(tmp_path_factory.mktemp("inconclusive") / "dataset")


@pytest.fixture(scope="module")
def blind_policy() -> PolicyAdapter:
    """A real tiny ACT whose action head is zeroed: every observation gets the same actions."""
    policy, *processors = tiny_act()
    with torch.no_grad():
        policy.model.action_head.weight.zero_()
    return PolicyAdapter(policy, *processors)


def test_corruptions_of_a_policy_that_ignores_its_inputs_are_inconclusive(
    dataset: Path, blind_policy: PolicyAdapter, tmp_path: Path
) -> None:
    params = CorruptionParams(
        frames=2, corruptions=["gaussian_noise", "state_noise"], severities=[5], loss=False
    )
    measured, finding = run(
        "robustness.corruptions",
        tmp_path,
        {"mean_action_deviation": {"max": 0.5}},
        params.model_dump(),
        policy=blind_policy,
        dataset=dataset,
    )
    assert measured.metrics["worst_action_deviation"] == 0.0
    assert finding.status == Status.INCONCLUSIVE and "ignores its inputs" in finding.message


def test_attributions_of_a_policy_that_ignores_its_inputs_are_inconclusive(
    dataset: Path, blind_policy: PolicyAdapter, tmp_path: Path
) -> None:
    params = AttributionParams(frames=2, methods=["saliency"], deletion_fractions=[0.5], heatmap_frames=0)
    _, finding = run(
        "explainability.attributions", tmp_path, {}, params.model_dump(), policy=blind_policy, dataset=dataset
    )
    assert finding.status == Status.INCONCLUSIVE and "ignores its inputs" in finding.message


def test_membership_inference_without_held_out_episodes_is_inconclusive(
    dataset: Path, blind_policy: PolicyAdapter, tmp_path: Path
) -> None:
    measured, finding = run(
        "privacy.membership_inference",
        tmp_path,
        {"loss_threshold_auc": {"max": 0.6}},
        {"train_episodes": [0, 1]},
        policy=blind_policy,
        dataset=dataset,
    )
    assert measured.metrics == {}
    assert finding.status == Status.INCONCLUSIVE and "no held-out episodes" in finding.message


FROZEN = {"frozen_camera_episodes": {"max": 0}, "nonfinite_state_values": {"max": 0}}


@pytest.fixture(scope="module")
def video_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_faulty_dataset(
        tmp_path_factory.mktemp("video") / "ds",
        Faults(frozen_camera_episode=1),
        episodes=3,
        frames_per_episode=12,
        image_size=(64, 64),
        use_videos=True,
    )


def test_a_frozen_camera_in_a_video_dataset_is_found(video_dataset: Path, tmp_path: Path) -> None:
    measured, finding = run("data.quality", tmp_path, FROZEN, {}, dataset=video_dataset)
    assert measured.metrics["cameras_unchecked"] == 0 and measured.metrics["images_checked"] == 36
    rows = {row["episode_index"]: row["frozen_cameras"] for row in measured.tables["episodes"]}
    assert rows == {0: [], 1: ["observation.images.top"], 2: []}
    assert finding.status == Status.FAIL and "frozen_camera_episodes=1" in finding.message


def test_cameras_without_a_decoded_frame_pair_are_inconclusive_never_pass(
    video_dataset: Path, tmp_path: Path
) -> None:
    measured, finding = run(
        "data.quality", tmp_path, FROZEN, {"max_frames_for_images": 0}, dataset=video_dataset
    )
    assert (measured.metrics["images_checked"], measured.metrics["cameras_unchecked"]) == (0, 1)
    assert measured.metrics["frozen_camera_episodes"] == 0
    assert finding.status == Status.INCONCLUSIVE
    assert "frozen_camera_episodes" in finding.message and "observation.images.top" in finding.message
