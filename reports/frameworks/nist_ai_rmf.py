"""NIST AI RMF 1.0: the MEASURE subcategories that a training run's evidence can serve."""

from trustai.reports.frameworks.base import MONITOR, Framework, Requirement


def _nist(sub: str) -> str:
    return f"nist-ai-rmf:MEASURE-{sub}"


NIST_AI_RMF = Framework(
    id="nist-ai-rmf",
    title="NIST AI RMF 1.0: MEASURE function",
    intro=(
        "Evidence for the MEASURE subcategories of the NIST AI Risk Management Framework 1.0 that a "
        "training run's evidence can serve. Each cites the ledger records it rests on; gaps name what the "
        "run does not measure."
    ),
    fallback="MEASURE 2.1",
    requirements=(
        Requirement(
            "MEASURE 2.1",
            "Test sets, metrics and TEVV tools documented",
            "Test sets, metrics and details about the tools used during TEVV are documented.",
            refs=(_nist("2.1"),),
            families=("data",),
            blocks=("policy_pack", "software"),
        ),
        Requirement(
            "MEASURE 2.3",
            "Performance under deployment-like conditions",
            "Performance or assurance criteria are measured in conditions similar to deployment.",
            refs=(_nist("2.3"),),
            families=("robustness",),
            expects=("robustness",),
        ),
        Requirement(
            "MEASURE 2.4",
            "Production monitoring",
            "The functionality and behaviour of the system are monitored in production.",
            refs=(_nist("2.4"),),
            families=("drift",),
            monitor=True,
            fields=("post_market_monitoring_plan",),
            expects=(MONITOR,),
        ),
        Requirement(
            "MEASURE 2.5",
            "Validity and reliability",
            "The system is shown to be valid and reliable; limits of generalisation are documented.",
            refs=(_nist("2.5"),),
            families=("train",),
            blocks=("limitations",),
        ),
        Requirement(
            "MEASURE 2.6",
            "Safety",
            "The system is evaluated regularly for safety risks; residual risk stays within tolerance.",
            refs=(_nist("2.6"),),
            fields=("foreseeable_risks", "risk_management"),
        ),
        Requirement(
            "MEASURE 2.7",
            "Security and resilience",
            "Security and resilience are evaluated and documented.",
            refs=(_nist("2.7"),),
            families=("robustness", "privacy"),
            blocks=("signing", "ledger"),
            fields=("cybersecurity",),
        ),
        Requirement(
            "MEASURE 2.8",
            "Transparency and accountability",
            "Risks associated with transparency and accountability are examined and documented.",
            refs=(_nist("2.8"),),
            families=("provenance",),
            blocks=("identity", "timeline"),
        ),
        Requirement(
            "MEASURE 2.9",
            "Explainability and interpretability",
            "The model is explained, validated and documented; outputs are interpreted in context.",
            refs=(_nist("2.9"),),
            families=("explainability",),
            expects=("explainability",),
        ),
        Requirement(
            "MEASURE 2.10",
            "Privacy",
            "Privacy risk of the system is examined and documented.",
            refs=(_nist("2.10"),),
            families=("privacy",),
            expects=("privacy",),
        ),
        Requirement(
            "MEASURE 2.11",
            "Fairness and bias",
            "Fairness and bias are evaluated and results documented.",
            refs=(_nist("2.11"),),
            families=("fairness",),
            expects=("fairness",),
        ),
        Requirement(
            "MEASURE 2.12",
            "Environmental impact",
            "Environmental impact and sustainability of model training and management are assessed.",
            refs=(_nist("2.12"),),
            blocks=("compute",),
            fields=("environmental_impact",),
        ),
        Requirement(
            "MEASURE 2.13",
            "Effectiveness of TEVV",
            "Effectiveness of the employed TEVV metrics and processes is evaluated and documented.",
            refs=(_nist("2.13"),),
            blocks=("outcomes",),
        ),
        Requirement(
            "MEASURE 3.1",
            "Tracking emergent risks",
            "Approaches, personnel and documentation are in place to identify and track existing, "
            "unanticipated and emergent risks.",
            refs=(_nist("3.1"),),
            families=("drift",),
            monitor=True,
            expects=(MONITOR,),
        ),
    ),
)
