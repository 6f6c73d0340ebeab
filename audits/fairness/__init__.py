"""Fairness audits: does a policy serve every task and every group of episodes (robot, site,
operator, lighting, ...) equally well?

``fairness.group_parity`` compares per-group performance with Fairlearn's ``MetricFrame``: the
open-loop error of the policy's action against the recorded action on sampled frames, and, when the
user supplies closed-loop rollouts, the success rate. A group is judged only when it holds at least
``min_group_size`` independent units (episodes for recorded frames, rollouts for success), because
frames of one episode are strongly correlated; smaller groups are listed as "too small to judge".
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from fairlearn.metrics import MetricFrame, selection_rate
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import mean_absolute_error
from trustai.audits.fairness.attributes import episode_attributes, read_records

from trustai.core.audit import Audit, AuditContext, Measurement, Metric, declare, register
from trustai.core.evidence import Stage
from trustai.errors import TrustaiUserError
from trustai.lerobot.datasets import DatasetInfo, episode_lengths, open_dataset_meta, resolve_dataset_root
from trustai.lerobot.frames import even_sample
from trustai.lerobot.policy_batches import audit_policy, iter_policy_batches

TOO_SMALL = "too small to judge"


class GroupParityParams(BaseModel):
    """Parameters of ``fairness.group_parity``."""

    model_config = ConfigDict(extra="forbid")

    attributes: list[str] = Field(
        default_factory=list, description="episode attributes to group by (meta/episodes columns or mapped)"
    )
    attributes_file: str | None = Field(None, description="CSV/JSON mapping episode_index to attributes")
    by_task: bool = Field(True, description="group by task text too")
    intersectional: bool = Field(True, description="also group by every grouping column together")
    min_group_size: int = Field(3, ge=1, description="independent units (episodes, rollouts) a group needs")
    required_groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description="attribute values that must have audited episodes (the settings the system is meant for)",
    )
    episodes: list[int] | None = Field(None, description="episodes to evaluate (default: all)")
    max_frames: int = Field(2000, ge=1, description="frames evaluated at most, spread evenly")
    rollouts_file: str | None = Field(
        None, description="closed-loop results: CSV/JSON rows with 'success' and grouping columns"
    )
    batch_size: int = Field(16, ge=1)
    device: str = "cpu"


def _groupings(columns: list[str], intersectional: bool) -> list[list[str]]:
    singles = [[c] for c in columns]
    return singles + ([columns] if intersectional and len(columns) > 1 else [])


def _label(values: Any) -> str:
    return " & ".join(map(str, values)) if isinstance(values, tuple) else str(values)


def _parity(
    frame: pd.DataFrame,
    columns: list[str],
    metric: str,
    fn: Callable,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    units: pd.Series,
    min_size: int,
) -> tuple[dict[str, float | None], list[dict[str, Any]]]:
    """Per-group ``metric`` for one grouping, and difference/ratio over the groups large enough to judge."""
    features = frame[columns]
    whole = MetricFrame(metrics={metric: fn}, y_true=y_true, y_pred=y_pred, sensitive_features=features)
    # Only groups that occur: Fairlearn also lists empty intersections (with NaN).
    sizes = units.groupby([features[c] for c in columns]).nunique()
    rows_per_group = features.groupby(columns).size()
    judged = [g for g, n in sizes.items() if n >= min_size]
    key = "_x_".join(columns)
    table = [
        {
            "metric": metric,
            "grouping": key,
            "group": _label(group),
            "units": int(n),
            "samples": int(rows_per_group[group]),
            "value": float(whole.by_group[metric][group]),
            "status": "judged" if n >= min_size else TOO_SMALL,
        }
        for group, n in sizes.items()
    ]
    summary: dict[str, float | None] = {
        f"{metric}_difference_by_{key}": None,
        f"{metric}_ratio_by_{key}": None,
    }
    if len(judged) >= 2:
        keep = pd.MultiIndex.from_frame(features).isin([g if isinstance(g, tuple) else (g,) for g in judged])
        part = MetricFrame(
            metrics={metric: fn},
            y_true=y_true[keep],
            y_pred=y_pred[keep],
            sensitive_features=features[keep],
        )
        summary[f"{metric}_difference_by_{key}"] = float(part.difference()[metric])
        summary[f"{metric}_ratio_by_{key}"] = float(part.ratio()[metric])
    return summary, table


def _compare(
    frame: pd.DataFrame,
    columns: list[str],
    metric: str,
    fn: Callable,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    units: pd.Series,
    params: GroupParityParams,
) -> tuple[dict[str, float | None], list[dict[str, Any]]]:
    """``_parity`` for every grouping of ``columns``, plus the worst difference and ratio over them."""
    metrics: dict[str, float | None] = {}
    table: list[dict[str, Any]] = []
    for grouping in _groupings(columns, params.intersectional):
        summary, groups = _parity(frame, grouping, metric, fn, y_true, y_pred, units, params.min_group_size)
        metrics.update(summary)
        table += groups
    differences = [
        v for k, v in metrics.items() if k.startswith(f"{metric}_difference_by_") and v is not None
    ]
    ratios = [v for k, v in metrics.items() if k.startswith(f"{metric}_ratio_by_") and v is not None]
    metrics[f"{metric}_difference"] = max(differences, default=None)
    metrics[f"{metric}_ratio"] = min(ratios, default=None)
    return metrics, table


def _check_required(attributes: dict[int, dict[str, str]], required: dict[str, list[str]]) -> None:
    """Raise TrustaiUserError when a required attribute value has no episode among the audited ones."""
    for attribute, wanted in required.items():
        present = {values[attribute] for values in attributes.values() if attribute in values}
        if not present:
            raise TrustaiUserError(
                f"required_groups names {attribute!r}, which is not one of the attributes grouped by",
                fix="list it in attributes as well",
            )
        empty = sorted(set(map(str, wanted)) - present)
        if empty:
            raise TrustaiUserError(
                f"groups {empty} of {attribute!r} have no members among the audited episodes",
                fix="record episodes for every intended setting, or drop the group from required_groups",
            )


def _predictions(
    ctx: AuditContext,
    params: GroupParityParams,
    info: DatasetInfo,
    lengths: dict[int, int],
    attributes: dict[int, dict[str, str]],
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Run the policy on sampled frames: one row per frame (episode, task, attributes), the recorded
    actions and the first action of each predicted chunk."""
    policy = audit_policy(ctx, params.device)
    rows: list[dict[str, Any]] = []
    predicted, recorded = [], []
    for batch in iter_policy_batches(
        info, policy, even_sample(lengths, params.max_frames), params.batch_size
    ):
        with torch.no_grad():
            predicted.append(policy.actions(batch.observation)[:, 0, :].numpy())
        recorded.append(batch.action)
        rows += [
            {"episode": e, "task": t, **attributes[e]}
            for (e, _), t in zip(batch.keys, batch.tasks, strict=True)
        ]
    return pd.DataFrame(rows), np.concatenate(recorded), np.concatenate(predicted)


@register
class GroupParity(Audit):
    """Performance parity of a policy across tasks and episode groups (Fairlearn MetricFrame)."""

    name = "fairness.group_parity"
    version = "1"
    stages = frozenset({Stage.CHECKPOINT, Stage.RELEASE})
    Params = GroupParityParams
    metrics = declare(
        {
            "groups_judged": Metric("count", "higher_is_better", "groups with at least min_group_size units"),
            "groups_too_small": Metric("count", "lower_is_better", "groups too small to judge"),
        },
        *(
            {
                metric: Metric(unit, direction, f"{what} over all samples"),
                f"{metric}_difference_by_<grouping>": Metric(
                    unit, "lower_is_better", f"largest minus smallest group {what} of a grouping"
                ),
                f"{metric}_ratio_by_<grouping>": Metric(
                    "ratio", "higher_is_better", f"smallest / largest group {what} of a grouping"
                ),
                f"{metric}_difference": Metric(
                    unit, "lower_is_better", f"worst {metric}_difference_by_<grouping> over groupings"
                ),
                f"{metric}_ratio": Metric(
                    "ratio", "higher_is_better", f"lowest {metric}_ratio_by_<grouping>"
                ),
            }
            for metric, unit, direction, what in (
                ("action_mae", "action units", "lower_is_better", "mean absolute action error"),
                ("success_rate", "fraction", "higher_is_better", "closed-loop success rate (rollouts_file)"),
            )
        ),
    )

    def measure(self, ctx: AuditContext, params: BaseModel) -> Measurement:
        """Run the policy on up to ``max_frames`` recorded frames and compare the mean absolute error
        of its first predicted action against the recorded action across groups: each grouping column
        (task, then each attribute) and, when ``intersectional``, all of them together.

        Metrics: action_mae (all frames); per grouping G, action_mae_difference_by_G (largest minus
        smallest group error) and action_mae_ratio_by_G (smallest / largest), over judged groups only
        and None when fewer than two are judged; action_mae_difference (worst over groupings) and
        action_mae_ratio (lowest); groups_judged and groups_too_small. With ``rollouts_file`` the
        same for success_rate. Table ``groups``: metric, grouping, group, units, samples, value, status.
        Raises TrustaiUserError for unknown attributes, episodes without values, empty required
        groups or nothing to group by.
        """
        assert isinstance(params, GroupParityParams)
        info = open_dataset_meta(resolve_dataset_root(ctx.dataset))
        lengths = episode_lengths(info.root)
        chosen = sorted(lengths) if params.episodes is None else sorted(params.episodes)
        unknown = sorted(set(chosen) - set(lengths))
        if unknown:
            raise TrustaiUserError(f"episodes {unknown} are not in the dataset", where=str(info.root))
        columns = (["task"] if params.by_task else []) + params.attributes
        if not columns:
            raise TrustaiUserError("nothing to group by", fix="set by_task: true or list attributes")
        attributes = episode_attributes(info.root, params.attributes, chosen, params.attributes_file)
        _check_required(attributes, params.required_groups)

        frame, y_true, y_pred = _predictions(ctx, params, info, {e: lengths[e] for e in chosen}, attributes)
        metrics: dict[str, float | int | bool | None] = {
            "action_mae": float(mean_absolute_error(y_true, y_pred))
        }
        found, table = _compare(
            frame.astype({c: str for c in columns}),
            columns,
            "action_mae",
            mean_absolute_error,
            y_true,
            y_pred,
            frame["episode"],
            params,
        )
        metrics.update(found)
        if params.rollouts_file is not None:
            success, success_groups = _success(params, columns)
            metrics.update(success)
            table += success_groups
        metrics["groups_judged"] = sum(row["status"] == "judged" for row in table)
        metrics["groups_too_small"] = sum(row["status"] == TOO_SMALL for row in table)
        return Measurement(metrics=metrics, tables={"groups": table})


def _success(params: GroupParityParams, columns: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Success-rate parity over closed-loop rollouts, for every grouping the rollouts file can fill."""
    assert params.rollouts_file is not None
    rollouts = pd.DataFrame(read_records(params.rollouts_file))
    present = [c for c in columns if c in rollouts]
    if "success" not in rollouts or not present:
        raise TrustaiUserError(
            f"rollouts need a 'success' column and at least one of {columns}",
            where=params.rollouts_file,
            fix="write one row per closed-loop episode: success (0/1) plus its task and attributes",
        )
    success = rollouts["success"].map(lambda v: str(v).strip().lower() in ("1", "true", "yes")).to_numpy(int)
    frame = rollouts[present].astype(str)
    metrics: dict[str, Any] = {"success_rate": float(success.mean())}
    found, table = _compare(
        frame,
        present,
        "success_rate",
        selection_rate,
        np.ones_like(success),
        success,
        pd.Series(range(len(frame))),
        params,
    )
    metrics.update(found)
    return metrics, table
