"""Privacy (personal data, membership inference), fairness, drift and datasheet audits on small
synthetic LeRobot datasets and tiny ACT policies, with the real OpenCV, ART, Fairlearn, Evidently and
Ray; plus the `trustai drift` and `trustai monitor` commands."""

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from trustai.audits.data.datasheet import PROVIDER_TODO
from trustai.audits.drift.features import dataset_features, feature_spec, with_steps
from trustai.audits.drift.permutation import compare_feature, episode_splits, holm
from trustai.audits.privacy.pii import scan_text
from typer.testing import CliRunner

from tests.planted_faults import Faults, make_faulty_dataset
from tests.tiny_policies import tiny_act
from trustai.cli import app
from trustai.core.audit import AuditContext, Measurement, get_audit
from trustai.core.evidence import Stage
from trustai.core.ledger import Ledger
from trustai.errors import TrustaiUserError
from trustai.governance import Governance
from trustai.lerobot.adapter import PolicyAdapter
from trustai.lerobot.datasets import data_files, dataset_fingerprint, open_dataset_meta
from trustai.lerobot.synthetic import make_synthetic_dataset

TOP, WRIST = "observation.images.top", "observation.images.wrist"
LEFT, RIGHT = "push the block left", "push the block right"
EMAIL_TASK = "push the block right, then mail jane.doe@example.com"
SITES = ["lab", "lab", "lab", "lab", "plant", "plant", "plant", "home"]


def run_audit(name: str, stage: Stage, artifact_dir: Path, **context: Any) -> Measurement:
    params = context.pop("params", {})
    audit = get_audit(name)
    ctx = AuditContext(stage=stage, artifact_dir=artifact_dir, **context)
    return audit().measure(ctx, audit.Params.model_validate(params))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    """The test machines share two cores; several torch threads per process thrash under that load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- datasets -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pii_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 96×128 cameras, a real face on the top camera of episode 2 frame 7, an email in task 1,
    spread over several frame files."""
    return make_faulty_dataset(
        tmp_path_factory.mktemp("pii") / "ds",
        Faults(face_frames=[(2, 7)]),
        episodes=4,
        frames_per_episode=12,
        image_size=(96, 128),
        cameras=(TOP, WRIST),
        tasks=(LEFT, EMAIL_TASK),
        data_files_size_in_mb=1,
    )


# Drift compares sessions episode by episode: 8 episodes a side are enough to be significant.
SESSION = {"episodes": 8, "frames_per_episode": 8}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("ref") / "ds", **SESSION)


@pytest.fixture(scope="module")
def same_process(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference's scripted controller recorded again, with another seed."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("same") / "ds", seed=1, **SESSION)


@pytest.fixture(scope="module")
def brighter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``same_process`` under brighter lighting."""
    return make_faulty_dataset(
        tmp_path_factory.mktemp("brighter") / "ds", Faults(lighting_offset=40), seed=1, **SESSION
    )


def _jittery_actions(episode: int, frame: int, values: dict[str, Any]) -> dict[str, Any]:
    noise = np.random.default_rng([episode, frame]).normal(0.0, 0.05, values["action"].shape)
    return {**values, "action": values["action"] + noise.astype(np.float32)}


@pytest.fixture(scope="module")
def jittery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``same_process`` with a jittery controller: noise of 0.05 on every action (the block travels
    0.8 in an episode)."""
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("jittery") / "ds", seed=1, edit_frame=_jittery_actions, **SESSION
    )


@pytest.fixture(scope="module")
def policy_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight episodes (tasks alternate left/right) with a per-episode ``site`` in meta/episodes."""
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("policy") / "ds",
        episodes=8,
        frames_per_episode=20,
        image_size=(32, 32),
        episode_attributes={"site": SITES},
    )


# -- tiny ACT policies (tests.tiny_policies.tiny_act) -------------------------------------------------


def overfit(root: Path, episodes: list[int], steps: int = 400) -> PolicyAdapter:
    """Train a tiny ACT on ``episodes`` only, with its own optimizer, until it memorises them.

    The random ResNet backbone stays frozen (its backward pass would dominate CPU time); the
    transformer and heads have plenty of capacity to memorise 40 frames.
    """
    policy, preprocessor, postprocessor = tiny_act(root)
    data = LeRobotDataset(
        "trustai/synthetic",
        root=root,
        episodes=episodes,
        delta_timestamps={"action": [i / 10 for i in range(5)]},
    )
    frames = preprocessor(next(iter(torch.utils.data.DataLoader(data, batch_size=len(data)))))
    policy.model.backbone.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    policy.train()
    for _ in range(steps):
        rows = torch.randperm(len(data), generator=generator)[:8]
        batch = {
            k: v[rows] if isinstance(v, torch.Tensor) and len(v) == len(data) else v
            for k, v in frames.items()
        }
        loss, _ = policy.forward(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    policy.eval()
    return PolicyAdapter(policy, preprocessor, postprocessor)


@pytest.fixture(scope="module")
def fresh_policy(policy_dataset: Path) -> PolicyAdapter:
    policy, preprocessor, postprocessor = tiny_act(policy_dataset)
    return PolicyAdapter(policy.eval(), preprocessor, postprocessor)


class FailsOnTask(PolicyAdapter):
    """A policy whose actions are off by 1.0 on every dimension whenever the task is ``task``."""

    task = RIGHT

    def actions(self, batch: dict[str, Any]) -> torch.Tensor:
        out = super().actions(batch)
        failing = torch.tensor([t == self.task for t in batch["task"]])
        return out + failing[:, None, None].float()


# -- privacy.pii ----------------------------------------------------------------------------------------


def test_personal_data_patterns() -> None:
    text = (
        "mail jane.doe@example.com or call +49 30 1234567, pay DE89 3704 0044 0532 0130 00 "
        "by card 4111 1111 1111 1111 from 192.168.1.20"
    )
    assert [m.kind for m in scan_text(text)] == ["email", "phone", "iban", "payment_card", "ip_address"]
    harmless = "at 2024-05-01 10:30 push the block 3 cm left, 4111 1111 1111 1112, DE00 1234 5678 9012 34"
    assert scan_text(harmless) == []


def test_pii_flags_the_planted_face_and_email(pii_dataset: Path, tmp_path: Path) -> None:
    result = run_audit("privacy.pii", Stage.DATA, tmp_path, dataset=pii_dataset)
    m = result.metrics
    assert (m["frames_checked"], m["cameras_checked"]) == (48, 2)
    assert (m["faces"], m["frames_with_faces"], m["episodes_with_faces"]) == (1, 1, 1)
    [flagged] = result.tables["flagged_frames"]
    assert (flagged["episode_index"], flagged["frame_index"], flagged["camera"]) == (2, 7, TOP)
    assert (m["tasks_with_personal_data"], m["text_email"], m["personal_data_matches"]) == (1, 1, 1)
    start = EMAIL_TASK.index("jane")
    email = ["email", start, start + len("jane.doe@example.com")]
    assert result.tables["flagged_tasks"] == [{"task_index": 1, "kinds": ["email"], "spans": [email]}]
    # Episodes 1 and 3 carry the email task; episode 2 the face.
    assert [row["episode_index"] for row in result.tables["flagged_episodes"]] == [1, 2, 3]
    assert m["episodes_with_personal_data"] == 3
    assert "jane.doe" not in json.dumps(result.tables)  # evidence never copies the personal data


def test_pii_sampling_cap_and_bad_camera(pii_dataset: Path, tmp_path: Path) -> None:
    capped = run_audit("privacy.pii", Stage.DATA, tmp_path, dataset=pii_dataset, params={"max_frames": 10})
    assert capped.metrics["frames_checked"] == 10
    with pytest.raises(TrustaiUserError, match="not RGB cameras"):
        run_audit("privacy.pii", Stage.DATA, tmp_path, dataset=pii_dataset, params={"cameras": ["front"]})


def test_pii_decodes_video_cameras(tmp_path: Path) -> None:
    videos = make_faulty_dataset(
        tmp_path / "videos",
        Faults(face_frames=[(1, 5)]),
        episodes=3,
        frames_per_episode=12,
        image_size=(96, 128),
        use_videos=True,
    )
    assert open_dataset_meta(videos).video_keys == [TOP]
    result = run_audit("privacy.pii", Stage.DATA, tmp_path, dataset=videos)
    assert result.metrics["frames_checked"] == 36 and result.inconclusive is None
    assert [(r["episode_index"], r["frame_index"]) for r in result.tables["flagged_frames"]] == [(1, 5)]
    # No frame decoded: "no face" would be a verdict without a measurement.
    unseen = run_audit("privacy.pii", Stage.DATA, tmp_path, dataset=videos, params={"max_frames": 0})
    assert unseen.metrics["frames_checked"] == 0 and "no frame of camera(s)" in str(unseen.inconclusive)
    assert unseen.inconclusive_metrics is not None and "faces" in unseen.inconclusive_metrics


# -- privacy.membership_inference ----------------------------------------------------------------------


def test_membership_attack_succeeds_on_an_overfit_policy(
    policy_dataset: Path, fresh_policy: PolicyAdapter, tmp_path: Path
) -> None:
    split = {"train_episodes": [0, 2], "holdout_episodes": [4, 6]}  # all "push left": one distribution
    memorised = overfit(policy_dataset, [0, 2])
    results = {
        name: run_audit(
            "privacy.membership_inference",
            Stage.CHECKPOINT,
            tmp_path,
            dataset=policy_dataset,
            policy=policy,
            params=split,
        ).metrics
        for name, policy in (("overfit", memorised), ("unseen", fresh_policy))
    }
    overfit_m, unseen = results["overfit"], results["unseen"]
    assert (overfit_m["member_frames"], overfit_m["non_member_frames"]) == (40, 40)
    assert overfit_m["loss_gap"] > 0.2 and overfit_m["member_loss_mean"] < overfit_m["non_member_loss_mean"]
    assert overfit_m["loss_threshold_auc"] > 0.9 and overfit_m["art_blackbox_auc"] > 0.8
    assert overfit_m["loss_threshold_auc"] > unseen["loss_threshold_auc"]
    assert overfit_m["art_blackbox_auc"] > unseen["art_blackbox_auc"]
    assert overfit_m["loss_threshold_tpr_at_1pct_fpr"] > unseen["loss_threshold_tpr_at_1pct_fpr"]


def test_membership_split_comes_from_the_training_dataset_or_fails_clearly(
    policy_dataset: Path, fresh_policy: PolicyAdapter, tmp_path: Path
) -> None:
    training = LeRobotDataset("trustai/synthetic", root=policy_dataset, episodes=[0, 1])
    result = run_audit(
        "privacy.membership_inference",
        Stage.CHECKPOINT,
        tmp_path,
        dataset=training,
        policy=fresh_policy,
        params={"max_samples": 4},
    )
    splits = {row["episode_index"]: row["split"] for row in result.tables["episodes"]}
    assert {e for e, s in splits.items() if s == "train"} == {0, 1}
    assert {e for e, s in splits.items() if s == "holdout"} <= set(range(2, 8))
    bad = [
        ({"train_episodes": [0, 1], "holdout_episodes": [1, 2]}, "both training and held-out"),
        ({"holdout_episodes": [42]}, "not in the dataset"),
    ]
    for params, message in bad:
        with pytest.raises(TrustaiUserError, match=message):
            run_audit(
                "privacy.membership_inference",
                Stage.CHECKPOINT,
                tmp_path,
                dataset=policy_dataset,
                policy=fresh_policy,
                params=params,
            )


# -- fairness.group_parity -----------------------------------------------------------------------------


def test_group_parity_shows_the_task_a_policy_fails_on(
    policy_dataset: Path, fresh_policy: PolicyAdapter, tmp_path: Path
) -> None:
    rollouts = tmp_path / "rollouts.json"
    rollouts.write_text(
        json.dumps([{"task": LEFT, "success": 1}] * 4 + [{"task": RIGHT, "success": s} for s in (1, 0, 0, 0)])
    )
    params = {"attributes": ["site"], "min_group_size": 2, "rollouts_file": str(rollouts)}
    failing = FailsOnTask(fresh_policy.policy, fresh_policy.preprocessor, fresh_policy.postprocessor)
    fair = run_audit(
        "fairness.group_parity",
        Stage.CHECKPOINT,
        tmp_path,
        dataset=policy_dataset,
        policy=fresh_policy,
        params=params,
    )
    unfair = run_audit(
        "fairness.group_parity",
        Stage.CHECKPOINT,
        tmp_path,
        dataset=policy_dataset,
        policy=failing,
        params=params,
    )
    gap, base = unfair.metrics["action_mae_difference_by_task"], fair.metrics["action_mae_difference_by_task"]
    assert gap > 0.5 and gap > 5 * base  # the planted error: +1.0 on every action dimension of one task
    assert unfair.metrics["action_mae_ratio_by_task"] < fair.metrics["action_mae_ratio_by_task"]
    rows = [row for row in unfair.tables["groups"] if row["metric"] == "action_mae"]
    by_task = {row["group"]: row for row in rows if row["grouping"] == "task"}
    assert by_task[RIGHT]["value"] > by_task[LEFT]["value"]
    assert by_task[RIGHT]["units"] == 4 and by_task[RIGHT]["status"] == "judged"
    # "home" has one episode: listed, not judged; task x site is the intersectional grouping.
    sites = {row["group"]: row for row in rows if row["grouping"] == "site"}
    assert sites["home"]["status"] == "too small to judge" and sites["lab"]["status"] == "judged"
    assert any(row["grouping"] == "task_x_site" for row in rows)
    assert unfair.metrics["groups_too_small"] >= 1
    assert unfair.metrics["action_mae_difference"] >= gap
    assert unfair.metrics["success_rate_difference_by_task"] == pytest.approx(0.75)


def test_group_parity_by_task_alone_and_bad_input(
    policy_dataset: Path, fresh_policy: PolicyAdapter, tmp_path: Path
) -> None:
    plain = run_audit(
        "fairness.group_parity",
        Stage.CHECKPOINT,
        tmp_path,
        dataset=policy_dataset,
        policy=fresh_policy,
        params={"max_frames": 16},
    )
    assert plain.metrics["groups_judged"] == 2 and plain.metrics["groups_too_small"] == 0
    assert plain.metrics["action_mae_difference"] == plain.metrics["action_mae_difference_by_task"]
    mapping = tmp_path / "operators.csv"
    mapping.write_text("episode_index,operator\n" + "".join(f"{e},op{e % 2}\n" for e in range(8)))
    stray = tmp_path / "stray.json"
    stray.write_text(json.dumps({"99": {"operator": "x"}}))
    cases = [
        ({"attributes": ["lighting"]}, "neither meta/episodes columns nor in the mapping file"),
        (
            {"attributes": ["site"], "required_groups": {"site": ["lab", "warehouse"]}},
            "'warehouse'.*no members",
        ),
        ({"attributes": ["operator"], "attributes_file": str(stray)}, "not among the audited episodes"),
        (
            {"attributes": ["operator"], "attributes_file": str(mapping), "episodes": [0, 99]},
            "not in the dataset",
        ),
    ]
    for params, message in cases:
        with pytest.raises(TrustaiUserError, match=message):
            run_audit(
                "fairness.group_parity",
                Stage.CHECKPOINT,
                tmp_path,
                dataset=policy_dataset,
                policy=fresh_policy,
                params=params,
            )


# -- drift.features -------------------------------------------------------------------------------------


def test_a_new_session_of_the_same_process_does_not_drift(
    reference: Path, same_process: Path, tmp_path: Path
) -> None:
    result = run_audit("drift.features", Stage.MONITOR, tmp_path, dataset=same_process, reference=reference)
    assert result.metrics["features"] == 6 + 6 + 5 + 12  # state, action, 5 camera statistics, steps
    assert (result.metrics["reference_episodes"], result.metrics["current_episodes"]) == (8, 8)
    assert (result.metrics["reference_frames"], result.metrics["current_frames"]) == (64, 64)
    assert (result.metrics["drifted_features"], result.metrics["dataset_drift"]) == (0, False)
    assert result.artifacts == [tmp_path / "drift_report.html"]
    assert "<html" in result.artifacts[0].read_text()[:2000].lower()


def test_lighting_and_jittery_actions_drift_where_they_should(
    reference: Path, brighter: Path, jittery: Path, tmp_path: Path
) -> None:
    lit = run_audit("drift.features", Stage.MONITOR, tmp_path / "lit", dataset=brighter, reference=reference)
    jitter = run_audit(
        "drift.features", Stage.MONITOR, tmp_path / "jit", dataset=jittery, reference=reference
    )
    assert lit.metrics["dataset_drift"] is True and jitter.metrics["dataset_drift"] is True
    lit_drifted = {row["feature"] for row in lit.tables["features"] if row["drifted"]}
    assert {f"{TOP}/brightness", f"{TOP}/mean_g"} <= lit_drifted
    assert lit.metrics["drifted_image_features"] == len(lit_drifted)
    jitter_drifted = {row["feature"] for row in jitter.tables["features"] if row["drifted"]}
    assert "action/block_x.target:step" in jitter_drifted
    assert all(name.startswith("action/") for name in jitter_drifted)
    assert jitter.metrics["drifted_action_features"] == len(jitter_drifted)
    for row in lit.tables["features"] + jitter.tables["features"]:
        assert row["drifted"] == (row["score"] <= row["threshold"] and row["effect"] >= row["min_effect"])

    # A significant difference smaller than min_effect is no drift.
    strict = run_audit(
        "drift.features",
        Stage.MONITOR,
        tmp_path / "strict",
        dataset=jittery,
        reference=reference,
        params={"min_effect": 1000.0, "images": False},
    )
    assert any(row["score"] <= row["threshold"] for row in strict.tables["features"])
    assert strict.metrics["dataset_drift"] is False


def test_too_few_episodes_cannot_drift_and_say_so(tmp_path: Path) -> None:
    small = {"episodes": 4, "frames_per_episode": 8}
    reference = make_synthetic_dataset(tmp_path / "ref", **small)
    brighter = make_faulty_dataset(tmp_path / "lit", Faults(lighting_offset=80), seed=1, **small)
    result = run_audit("drift.features", Stage.MONITOR, tmp_path / "a", dataset=brighter, reference=reference)
    assert result.metrics["min_p_value"] == 2 / 70  # every split of 4 + 4 episodes, mirrored splits tie
    assert result.metrics["min_p_value"] > 0.05 / result.metrics["features"]
    assert result.metrics["dataset_drift"] is False
    assert result.inconclusive is not None and "too few episodes" in result.inconclusive


def test_episode_permutation_test_and_holm() -> None:
    splits = episode_splits(4, 4, permutations=5000, rng=np.random.default_rng(0))
    assert splits.exact and splits.members.shape == (70, 8)
    assert splits.members[0].tolist() == [True] * 4 + [False] * 4  # the observed split comes first
    apart = compare_feature([np.full(5, 0.0)] * 4, [np.full(5, 1.0)] * 4, splits)
    assert apart.p_value == 2 / 70 and apart.effect > 1
    mixed = compare_feature([np.array([0.0, 1.0])] * 4, [np.array([1.0, 0.0])] * 4, splits)
    assert (mixed.p_value, mixed.effect) == (1.0, 0.0)
    sampled = episode_splits(10, 10, permutations=500, rng=np.random.default_rng(0))
    assert not sampled.exact and sampled.members.shape == (501, 20) and sampled.min_p_value == 1 / 501
    assert (sampled.members.sum(axis=1) == 10).all()
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_drift_bad_input(reference: Path, tmp_path: Path) -> None:
    other = make_synthetic_dataset(tmp_path / "other", episodes=2, frames_per_episode=4, state_dim=4)
    with pytest.raises(TrustaiUserError, match="not have the same features"):
        run_audit("drift.features", Stage.MONITOR, tmp_path, dataset=other, reference=reference)
    with pytest.raises(TrustaiUserError, match="needs a reference"):
        run_audit("drift.features", Stage.MONITOR, tmp_path, dataset=reference)


def test_drift_features_on_ray_match_inline(pii_dataset: Path) -> None:
    info = open_dataset_meta(pii_dataset)
    assert len(data_files(pii_dataset)) > 1
    spec = feature_spec(info)
    [inline] = dataset_features([info], spec, max_frames=30)
    [on_ray] = dataset_features([info], spec, max_frames=30, use_ray=True)
    assert len(inline) == 30  # 15 pairs of consecutive frames
    assert with_steps(inline, spec)[spec.step_names].notna().all(axis=1).sum() == 15
    assert np.allclose(inline.to_numpy(), on_ray.to_numpy())


# -- data.datasheet -------------------------------------------------------------------------------------


def test_datasheet_is_auto_filled_and_marks_provider_fields(pii_dataset: Path, tmp_path: Path) -> None:
    result = run_audit("data.datasheet", Stage.DATA, tmp_path / "a", dataset=pii_dataset)
    markdown = (tmp_path / "a" / "datasheet.md").read_text()
    sheet = json.loads((tmp_path / "a" / "datasheet.json").read_text())
    entries = {e["id"]: e for e in sheet["entries"]}
    assert entries["totals"]["answer"]["episodes"] == 4 and entries["totals"]["answer"]["frames"] == 48
    assert entries["sensors"]["answer"]["fps"] == 10
    assert entries["sensors"]["answer"]["robot_type"] == "trustai_synthetic_pusher"
    assert "(robot type trustai_synthetic_pusher)" in entries["instances"]["answer"]
    assert {t["task"] for t in entries["tasks"]["answer"]} == {LEFT, EMAIL_TASK}
    assert entries["personal_data"]["answer"]["faces"] == 1
    assert entries["quality"]["answer"]["frames"] == 48
    assert dataset_fingerprint(pii_dataset) in entries["fingerprint"]["answer"]
    assert entries["consent"]["answer"] == PROVIDER_TODO and entries["consent"]["source"] == "todo"
    assert markdown.count(PROVIDER_TODO) == result.metrics["to_complete"] + 1  # + the summary line
    assert "## Collection process" in markdown and "| observation.state |" in markdown
    assert result.metrics["to_complete"] > 0 and result.metrics["auto_filled"] >= 9

    answers = tmp_path / "answers.yaml"
    answers.write_text("consent: Operators signed consent forms; no bystanders were recorded.\n")
    answered = run_audit(
        "data.datasheet",
        Stage.DATA,
        tmp_path / "b",
        dataset=pii_dataset,
        params={"provider_answers": str(answers), "audits": []},
    )
    # consent is answered; quality and personal data, no longer measured, go back to the provider.
    assert answered.metrics["provider_answered"] == 1
    assert answered.metrics["to_complete"] == result.metrics["to_complete"] + 1
    answers.write_text("favourite_colour: blue\n")
    with pytest.raises(TrustaiUserError, match="question ids"):
        run_audit(
            "data.datasheet",
            Stage.DATA,
            tmp_path / "c",
            dataset=pii_dataset,
            params={"provider_answers": str(answers)},
        )


# -- CLI: trustai drift, trustai monitor ----------------------------------------------------------------


def test_drift_command(
    reference: Path, same_process: Path, brighter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    runner = CliRunner()
    same = runner.invoke(app, ["drift", "--reference", str(reference), "--current", str(same_process)])
    assert same.exit_code == 0, same.output
    assert "drifted features: 0 of 29" in same.output and "verdict: no drift" in same.output
    # Lighting moves the 4 colour statistics of the 29 features: the audit's own verdict (dataset_drift)
    # exits 1, whatever the deprecated share limit says.
    arguments = ["--reference", str(reference), "--current", str(brighter), "--max-drift-share", "0.9"]
    moved = runner.invoke(app, ["drift", *arguments, "--out", str(tmp_path)])
    assert moved.exit_code == 1, moved.output
    assert "verdict: drift" in moved.output and "--max-drift-share is deprecated" in moved.output
    assert (tmp_path / "drift_report.html").is_file()
    result = json.loads((tmp_path / "drift.json").read_text())
    assert result["metrics"]["dataset_drift"] is True
    # Output into a pipe is not laid out for 80 columns: the summary line and each drifted row stay whole.
    lines = moved.output.splitlines()
    assert any(line.startswith("drifted features: ") and line.endswith("drift_report.html") for line in lines)
    drifted = [row["feature"] for row in result["features"] if row["drifted"]]
    assert all(any(name in line and "yes" in line for line in lines) for name in drifted)


def test_monitor_appends_post_market_evidence_to_the_run_ledger(
    reference: Path, brighter: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    training = shutil.copytree(reference, tmp_path / "training")
    governance = Governance(run_dir, "default")
    governance.start(
        {
            "train_config": {"dataset": {"repo_id": "trustai/synthetic", "root": str(training)}},
            "dataset": {"id": "trustai/synthetic", "fingerprint": dataset_fingerprint(training)},
        }
    )
    governance.close()
    runner = CliRunner()
    result = runner.invoke(app, ["monitor", str(run_dir), "--current", str(brighter)])
    assert result.exit_code == 0, result.output  # drift is a warning in the default pack
    ledger = Ledger(run_dir / "trustai" / "ledger.sqlite", create=False)
    findings = {r.payload["check_id"]: r.payload for r in ledger.records("finding")}
    evidence = [r.payload for r in ledger.records("evidence") if r.payload["audit"] == "drift.features"]
    assert ledger.verify().ok
    ledger.close()
    assert findings["monitor-drift"]["stage"] == "monitor" and findings["monitor-drift"]["status"] == "warn"
    assert evidence[0]["inputs"]["dataset_fingerprint"] == dataset_fingerprint(brighter)
    assert evidence[0]["artifacts"][0]["path"].endswith("drift_report.html")

    (training / "meta" / "stats.json").write_text("{}")  # the training data changed since the run
    changed = runner.invoke(app, ["monitor", str(run_dir), "--current", str(brighter)])
    assert isinstance(changed.exception, TrustaiUserError) and "fingerprint" in str(changed.exception)
