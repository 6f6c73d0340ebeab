"""Two-sample drift tests with episodes, not frames, as the unit.

Frames of one episode are strongly autocorrelated, so frame-level two-sample tests treat a few
episodes as thousands of independent draws and call two recordings of the same process different
whenever their handful of episodes differ. Here a feature's statistic is the Wasserstein-1 distance
between the reference's and the current data's frames, and its null distribution comes from dealing
whole episodes out again between the two sides: over every split when there are few, else over
random splits. Each feature also gets an effect size, that distance in units of the two datasets'
spread, and ``holm`` adjusts the p-values of all features together, so that a dataset with many
features does not drift by chance.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.stats import wasserstein_distance

# The distance is integrated over the pooled values when they are this few, else over this many
# quantiles of them: the test statistic then costs the same whatever the number of frames.
GRID_POINTS = 256
_CHUNK = 1024  # splits evaluated at once; memory is _CHUNK x GRID_POINTS floats


@dataclass(frozen=True)
class Splits:
    """Ways to deal the pooled episodes (reference first, then current) into a reference side of the
    observed size: ``members[i, e]`` says episode ``e`` is on the reference side in split ``i``. Row 0
    is the observed split; ``exact`` when the rows are every possible split, else random ones."""

    members: np.ndarray
    exact: bool

    @property
    def min_p_value(self) -> float:
        """The smallest p-value a test over these splits can give (ties included)."""
        reference = int(self.members[0].sum())
        mirrored = self.exact and 2 * reference == self.members.shape[1]  # a split and its mirror tie
        return (2 if mirrored else 1) / len(self.members)


def episode_splits(reference: int, current: int, permutations: int, rng: np.random.Generator) -> Splits:
    """Every split of ``reference + current`` episodes into sides of those sizes when there are at most
    ``permutations`` of them, else the observed split and ``permutations`` random ones."""
    total = reference + current
    if math.comb(total, reference) <= permutations:
        chosen = list(combinations(range(total), reference))  # the first is the observed split
        members = np.zeros((len(chosen), total), bool)
        members[np.repeat(np.arange(len(chosen)), reference), np.concatenate(chosen)] = True
        return Splits(members, exact=True)
    observed = np.arange(total) < reference
    shuffled = rng.permuted(np.tile(observed, (permutations, 1)), axis=1)
    return Splits(np.vstack([observed, shuffled]), exact=False)


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's test: permutation p-value of the Wasserstein distance (unadjusted) and the
    effect size (that distance in pooled standard deviations)."""

    p_value: float
    effect: float


def _distances(episodes: Sequence[np.ndarray], members: np.ndarray) -> np.ndarray:
    """Wasserstein-1 distance between the frames of the two sides of every split, with the CDFs
    compared on the pooled values (or GRID_POINTS quantiles of them)."""
    pooled = np.concatenate(episodes)
    grid = np.unique(pooled)
    if len(grid) > GRID_POINTS + 1:
        grid = np.unique(np.quantile(pooled, np.linspace(0.0, 1.0, GRID_POINTS + 1)))
    if len(grid) < 2:
        return np.zeros(len(members))
    widths = np.diff(grid)
    # at_most[e, g]: frames of episode e with a value <= grid[g]
    at_most = np.stack([np.searchsorted(np.sort(v), grid[:-1], side="right") for v in episodes]).astype(float)
    counts = np.array([len(v) for v in episodes], float)
    all_below = at_most.sum(0)
    distances = []
    for start in range(0, len(members), _CHUNK):
        side = members[start : start + _CHUNK].astype(float)
        below, n = side @ at_most, side @ counts
        other_n = counts.sum() - n
        # below/n - (all_below - below)/other_n, in place: this elementwise work, not the product
        # above, is what the test costs per split.
        with np.errstate(divide="ignore", invalid="ignore"):
            below *= (1 / n + 1 / other_n)[:, None]
            below -= np.outer(1 / other_n, all_below)
        gap = np.abs(below, out=below) @ widths
        # A split that leaves one side without frames says nothing: it never counts as extreme.
        distances.append(np.where((n > 0) & (other_n > 0), gap, 0.0))
    return np.concatenate(distances)


def compare_feature(
    reference: Sequence[np.ndarray], current: Sequence[np.ndarray], splits: Splits
) -> FeatureDrift:
    """Test one feature given its finite values per episode (reference episodes, then current ones,
    in the order ``splits`` numbers them): the share of splits whose distance is at least the
    observed one, and the effect size: the observed distance over the two datasets' pooled standard
    deviation (root mean of their variances, as in Cohen's d: a shift of every value by one standard
    deviation is 1), 0 when every value is the same."""
    episodes = [*reference, *current]
    distances = _distances(episodes, splits.members)
    p_value = float(np.mean(distances >= distances[0] * (1 - 1e-9)))
    ref, cur = np.concatenate(reference), np.concatenate(current)
    if not len(ref) or not len(cur):
        return FeatureDrift(p_value=1.0, effect=0.0)
    scale = math.sqrt((np.var(ref) + np.var(cur)) / 2)
    if scale == 0:  # both constant: any difference is a shift of the whole distribution
        scale = float(np.std(np.concatenate([ref, cur])))
    effect = float(wasserstein_distance(ref, cur)) / scale if scale > 0 else 0.0
    return FeatureDrift(p_value=p_value, effect=effect)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values: rejecting those <= alpha keeps the chance of any false
    rejection among all of them at most alpha."""
    order = np.argsort(p_values, kind="stable")
    m = len(order)
    scaled = np.minimum(1.0, np.maximum.accumulate([(m - k) * p_values[i] for k, i in enumerate(order)]))
    adjusted = np.empty(m)
    adjusted[order] = scaled
    return adjusted.tolist()
