"""Membership inference from a policy's per-sample training loss.

Two attacks score the same losses of frames the policy trained on (members) and frames it never saw
(non-members): the plain loss-threshold attack (Yeom et al., 2018: a low loss means "member") and
ART's learned ``MembershipInferenceBlackBox`` with ``input_type="loss"``. Each is summarised by its
ROC AUC and its true-positive rate at a 1% false-positive rate (Carlini et al., 2022), the figure
that matters when an attacker must be confident about the records it names.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

AttackModel = Literal["rf", "gb", "lr", "dt"]


@dataclass(frozen=True)
class AttackScores:
    """How well an attack told members from non-members on the frames it was evaluated on."""

    auc: float
    tpr_at_low_fpr: float
    members: int
    non_members: int


def roc_scores(is_member: np.ndarray, score: np.ndarray, max_fpr: float = 0.01) -> AttackScores:
    """ROC AUC of ``score`` (higher = more likely a member) and the best TPR with FPR <= ``max_fpr``."""
    fpr, tpr, _ = roc_curve(is_member, score)
    return AttackScores(
        auc=float(roc_auc_score(is_member, score)),
        tpr_at_low_fpr=float(tpr[fpr <= max_fpr].max(initial=0.0)),
        members=int(is_member.sum()),
        non_members=int(len(is_member) - is_member.sum()),
    )


def _labels(members: np.ndarray, non_members: np.ndarray) -> np.ndarray:
    return np.r_[np.ones(len(members)), np.zeros(len(non_members))]


def threshold_attack(members: np.ndarray, non_members: np.ndarray, max_fpr: float = 0.01) -> AttackScores:
    """The loss-threshold attack over every given loss: a sample is called a member when its loss is low."""
    return roc_scores(_labels(members, non_members), -np.r_[members, non_members], max_fpr)


def _halves(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    return order[: n // 2], order[n // 2 :]


def art_attack(
    members: np.ndarray,
    non_members: np.ndarray,
    model: AttackModel = "rf",
    seed: int = 0,
    max_fpr: float = 0.01,
) -> AttackScores:
    """ART's learned black-box attack on the losses: fit on a random half of the members and of the
    non-members, score the other halves. Needs at least 2 samples on each side; deterministic for
    ``seed``."""
    if min(len(members), len(non_members)) < 2:
        raise ValueError("the learned attack needs at least 2 members and 2 non-members")
    # Imported here: importing ART writes ~/.art/config.json, which only this attack should cause.
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
    from trustai.audits.privacy.art_estimators import PrecomputedLoss

    rng = np.random.default_rng(seed)
    (m_fit, m_eval), (n_fit, n_eval) = _halves(len(members), rng), _halves(len(non_members), rng)
    attack = MembershipInferenceBlackBox(PrecomputedLoss(), input_type="loss", attack_model_type=model)
    attack.attack_model.set_params(random_state=seed)
    # The label input of a loss attack on a regressor is its target; a constant leaves the loss alone.
    attack.fit(
        y=np.zeros(len(m_fit)),
        pred=members[m_fit],
        test_y=np.zeros(len(n_fit)),
        test_pred=non_members[n_fit],
    )
    evaluated = np.r_[members[m_eval], non_members[n_eval]]
    score = attack.infer(None, y=np.zeros(len(evaluated)), pred=evaluated, probabilities=True)
    return roc_scores(_labels(members[m_eval], non_members[n_eval]), np.ravel(score), max_fpr)
