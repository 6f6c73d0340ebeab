"""ART estimators that let ART's attacks examine a LeRobot policy through trustai.

Importing this module imports ART, which creates ``~/.art/config.json``; import it only where an
ART attack actually runs.
"""

import numpy as np
from art.estimators.estimator import BaseEstimator
from art.estimators.regression import RegressorMixin


class PrecomputedLoss(RegressorMixin, BaseEstimator):
    """The target policy as ART's loss-based attacks see it: its "prediction" for a sample is the
    policy's own per-sample training loss, computed beforehand (``PolicyAdapter.per_sample_loss``).

    ART 1.20's ``MembershipInferenceBlackBox`` reads losses through
    ``compute_loss_from_predictions(pred, y)`` when it is given ``pred`` instead of inputs, so the
    policy's multi-camera inputs never have to be flattened into an ART array.
    """

    estimator_params = BaseEstimator.estimator_params

    def __init__(self) -> None:
        super().__init__(model=None, clip_values=None)

    @property
    def input_shape(self) -> None:
        """No array input: samples are identified by their precomputed losses."""
        return None

    def predict(self, x: np.ndarray, **kwargs: object) -> np.ndarray:
        """Not available: the policy is run by trustai, not by ART."""
        raise NotImplementedError("losses are precomputed; pass them to the attack as pred")

    def fit(self, x: np.ndarray, y: np.ndarray, **kwargs: object) -> None:
        """Not available: the target policy is never trained by the attack."""
        raise NotImplementedError("the target policy is not trained by the attack")

    def compute_loss_from_predictions(self, pred: np.ndarray, y: np.ndarray, **kwargs: object) -> np.ndarray:
        """Return the precomputed per-sample losses ``pred`` unchanged (shape (N,))."""
        return np.asarray(pred, dtype=np.float64).reshape(-1)
