"""The HTML drift report: Evidently's drift metrics over per-episode summaries of the features.

Evidently tests each column as a sample of independent rows, so it is given one row per episode
(the episode's mean of each feature), not one per frame: its plots then show how episodes spread
and its per-column tests treat episodes as the unit, as the audit's own verdict does. The audit's
verdict (trustai.audits.drift.permutation) is the features table; the report is for reading: a
summary over every feature (how many drifted by Evidently's test) and one distribution plot per
feature the caller names (the drifted ones and those nearest to drifting). Plots are what cost:
about 0.2 s each, so a plot per feature of a 34-feature dataset took 7 s, whatever the dataset size.
"""

import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd


def episode_means(frames: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """One row per episode of ``frames`` (feature rows with an ``episode_index``): the mean of each
    of ``columns`` over the episode's frames, NaN left out."""
    return frames.groupby("episode_index")[list(columns)].mean().reset_index(drop=True)


def write_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    plotted: Sequence[str],
    threshold: float,
    path: Path,
) -> None:
    """Write Evidently's drift report of ``columns`` of ``current`` against ``reference`` (rows of
    episode summaries) to ``path``: a K-S test per column at ``threshold``, the count of drifted
    columns (dataset drift when any column drifts), and a distribution plot with its test for each of
    ``plotted``."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    definition = DataDefinition(numerical_columns=list(columns))
    report = Report(
        [
            DriftedColumnsCount(method="ks", threshold=threshold, drift_share=1 / len(columns)),
            *(ValueDrift(column=column, method="ks", threshold=threshold) for column in plotted),
        ],
        include_tests=True,
    )
    with warnings.catch_warnings():
        # Constant columns (an unused action dimension) make numpy warn inside Evidently's plots.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = report.run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
