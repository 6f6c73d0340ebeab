"""ISO/IEC 42001:2023: the Annex A controls that a governed training run serves."""

from trustai.reports.frameworks.base import MONITOR, Framework, Requirement

from trustai.packs.regulatory import ISO_42001_CONTROLS


def _iso(control: str) -> str:
    return f"iso-42001:{control}"


ISO_42001 = Framework(
    id="iso-42001",
    title="ISO/IEC 42001:2023 Annex A controls",
    intro=(
        "Evidence for the ISO/IEC 42001 Annex A controls that a governed training run serves. Each cites "
        "the ledger records it rests on; gaps name what the AI management system must supply."
    ),
    fallback="A.6.2.4",
    requirements=(
        Requirement(
            "A.4",
            ISO_42001_CONTROLS["A.4"],
            "Data, tooling, system and computing resources of the AI system are identified and documented.",
            refs=(_iso("A.4"),),
            blocks=("dataset", "software", "compute"),
        ),
        Requirement(
            "A.5",
            ISO_42001_CONTROLS["A.5"],
            "Impacts of the AI system on individuals, groups and societies are assessed and documented.",
            refs=(_iso("A.5"),),
            families=("fairness",),
            fields=("impact_assessment",),
            expects=("fairness",),
        ),
        Requirement(
            "A.6.2",
            ISO_42001_CONTROLS["A.6.2"],
            "The life cycle of the AI system is defined and its development is documented.",
            refs=(_iso("A.6.2"),),
            blocks=("method", "timeline"),
        ),
        Requirement(
            "A.6.2.4",
            ISO_42001_CONTROLS["A.6.2.4"],
            "Verification and validation measures and their criteria are defined and applied.",
            refs=(_iso("A.6.2.4"),),
            families=("train", "robustness", "explainability", "privacy", "fairness"),
            blocks=("policy_pack", "outcomes"),
            expects=("robustness",),
        ),
        Requirement(
            "A.6.2.6",
            ISO_42001_CONTROLS["A.6.2.6"],
            "Operation and monitoring of the AI system are defined and performed.",
            refs=(_iso("A.6.2.6"),),
            families=("drift",),
            monitor=True,
            fields=("post_market_monitoring_plan",),
            expects=(MONITOR,),
        ),
        Requirement(
            "A.6.2.7",
            ISO_42001_CONTROLS["A.6.2.7"],
            "Technical documentation of the AI system is provided to the relevant interested parties.",
            refs=(_iso("A.6.2.7"),),
            blocks=("identity", "architecture", "signing"),
        ),
        Requirement(
            "A.6.2.8",
            ISO_42001_CONTROLS["A.6.2.8"],
            "Event logs are recorded at the phases of the life cycle where they are needed.",
            refs=(_iso("A.6.2.8"),),
            families=("provenance",),
            blocks=("ledger",),
        ),
        Requirement(
            "A.7.3",
            ISO_42001_CONTROLS["A.7.3"],
            "How data for the AI system is acquired and selected is determined and documented.",
            refs=(_iso("A.7.3"), _iso("A.7")),
            blocks=("dataset",),
            fields=("data_governance",),
        ),
        Requirement(
            "A.7.4",
            ISO_42001_CONTROLS["A.7.4"],
            "Data quality requirements are defined and the data is checked against them.",
            refs=(_iso("A.7.4"),),
            families=("data",),
            expects=("data",),
        ),
        Requirement(
            "A.7.5",
            ISO_42001_CONTROLS["A.7.5"],
            "The provenance of data used in the AI system is recorded over its life cycle.",
            refs=(_iso("A.7.5"),),
            families=("provenance",),
            blocks=("dataset",),
        ),
        Requirement(
            "A.7.6",
            ISO_42001_CONTROLS["A.7.6"],
            "Criteria and methods for preparing data are defined and documented.",
            refs=(_iso("A.7.6"),),
            fields=("data_governance",),
        ),
        Requirement(
            "A.8",
            ISO_42001_CONTROLS["A.8"],
            "Users and other interested parties get the information they need about the AI system.",
            refs=(_iso("A.8"),),
            blocks=("signing",),
            fields=("instructions_for_use", "capabilities_and_limitations"),
        ),
        Requirement(
            "A.10",
            ISO_42001_CONTROLS["A.10"],
            "Responsibilities towards suppliers of data, models and tools, and towards customers, are set.",
            refs=(_iso("A.10"),),
            blocks=("software", "method"),
            fields=("third_parties",),
        ),
    ),
)
