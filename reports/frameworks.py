"""The structure of each regulatory framework a report follows, and what serves each of its items.

An item is served by evidence records whose finding cites one of its references (the policy pack's
``references``), by evidence of its default audit families (``robustness.*`` evidence serves
Annex IV 2(g) and Art. 15 whether or not the pack says so), by monitor-stage evidence where it is about
operation, by built-in run evidence (``blocks``), and by the provider's ``system.yaml`` fields. Missing
fields, expected audit families and built-in evidence become gaps. Items and references are those of
``trustai.regulatory.REFERENCES`` and ``shared/docs/REGULATORY.md``; none is invented here.
"""

from dataclasses import dataclass

from trustai.reports.model import Item

from trustai.errors import TrustaiUserError
from trustai.evidence import Stage

MONITOR = "monitor"  # in ``expects``: monitor-stage evidence of any family


@dataclass(frozen=True)
class Requirement:
    """One framework item and the evidence that serves it."""

    key: str
    title: str
    asks: str
    refs: tuple[str, ...] = ()  # regulatory references (catalogue ids) whose findings serve it
    families: tuple[str, ...] = ()  # audit families whose evidence serves it by default
    monitor: bool = False  # monitor-stage evidence of any family serves it (and is shown here first)
    blocks: tuple[str, ...] = ()  # built-in run evidence (trustai.reports.blocks.BLOCKS)
    fields: tuple[str, ...] = ()  # system.yaml fields the provider supplies
    expects: tuple[str, ...] = ()  # audit families (or MONITOR) whose absence from the run is a gap

    def serves(self, item: Item) -> bool:
        """True when ``item`` is evidence for this requirement."""
        return (
            any(ref in item.references for ref in self.refs)
            or item.family in self.families
            or (self.monitor and item.stage == Stage.MONITOR.value)
        )


@dataclass(frozen=True)
class Framework:
    """A framework's items in document order; ``fallback`` hosts evidence no item claims."""

    id: str
    title: str
    intro: str
    requirements: tuple[Requirement, ...]
    fallback: str
    crosswalk: tuple[Requirement, ...] = ()  # articles tabulated against the evidence (EU AI Act)


def _eu(ref: str) -> str:
    return f"eu-ai-act:{ref}"


EU_AI_ACT = Framework(
    id="eu-ai-act",
    title="EU AI Act technical documentation (Art. 11, Annex IV)",
    intro=(
        "Technical documentation of a high-risk AI system under Regulation (EU) 2024/1689, point by point "
        "as Annex IV lists it. Evidence comes from the run's hash-chained ledger and cites its records; "
        "statements marked as the provider's come from system.yaml; gaps are for the provider to close. "
        "Technical documentation is kept for 10 years (Art. 18)."
    ),
    fallback="Annex IV 2(g)",
    requirements=(
        Requirement(
            "Annex IV 1(a)",
            "Intended purpose, provider, version",
            "The intended purpose, the provider, the system's version and its relation to earlier versions.",
            refs=(_eu("annex-iv-1"),),
            blocks=("identity",),
            fields=("name", "version", "previous_versions", "intended_purpose", "provider"),
        ),
        Requirement(
            "Annex IV 1(b)",
            "Interaction with hardware, software, other AI systems",
            "How the system interacts with hardware, software and other AI systems it is not part of.",
            blocks=("interfaces",),
            fields=("interactions",),
        ),
        Requirement(
            "Annex IV 1(c)",
            "Software versions and update requirements",
            "Versions of the relevant software or firmware and requirements for version updates.",
            blocks=("software",),
            fields=("software_update_requirements",),
        ),
        Requirement(
            "Annex IV 1(d)",
            "Forms placed on the market",
            "All the forms in which the system is placed on the market or put into service.",
            fields=("market_forms",),
        ),
        Requirement(
            "Annex IV 1(e)",
            "Hardware it runs on",
            "The hardware on which the system is intended to run.",
            fields=("deployment_hardware",),
        ),
        Requirement(
            "Annex IV 1(f)",
            "Host product",
            "Where the system is a component of a product: photographs or illustrations of that product.",
            fields=("host_product",),
        ),
        Requirement(
            "Annex IV 1(g)",
            "User interface for the deployer",
            "A basic description of the user interface provided to the deployer.",
            fields=("user_interface",),
        ),
        Requirement(
            "Annex IV 1(h)",
            "Instructions for use",
            "Instructions for use for the deployer.",
            fields=("instructions_for_use",),
        ),
        Requirement(
            "Annex IV 2(a)",
            "Development methods and steps",
            "Methods and steps of development, including pre-trained systems or third-party tools used.",
            refs=(_eu("annex-iv-2a"),),
            families=("provenance",),
            blocks=("method",),
            fields=("development_methods", "third_parties"),
        ),
        Requirement(
            "Annex IV 2(b)",
            "Design specifications",
            "General logic, key design choices and rationale, what the system optimises, expected output, "
            "trade-offs.",
            refs=(_eu("annex-iv-2b"),),
            blocks=("interfaces",),
            fields=("design_specifications",),
        ),
        Requirement(
            "Annex IV 2(c)",
            "System architecture and compute",
            "The system architecture and the computational resources used to develop, train, test and "
            "validate it.",
            refs=(_eu("annex-iv-2c"),),
            blocks=("architecture", "compute"),
        ),
        Requirement(
            "Annex IV 2(d)",
            "Data requirements and datasheets",
            "Training methods and data sets: provenance, scope, main characteristics, selection, labelling "
            "and cleaning.",
            refs=(_eu("annex-iv-2d"),),
            families=("data",),
            blocks=("dataset",),
            fields=("data_governance",),
            expects=("data",),
        ),
        Requirement(
            "Annex IV 2(e)",
            "Assessment of human oversight measures",
            "Assessment of the human oversight measures needed (Art. 14), including technical measures "
            "that help deployers interpret outputs.",
            refs=(_eu("annex-iv-2e"),),
            families=("explainability",),
            fields=("human_oversight",),
        ),
        Requirement(
            "Annex IV 2(f)",
            "Pre-determined changes",
            "Pre-determined changes to the system and its performance, and how continuous compliance is "
            "kept through them.",
            refs=(_eu("annex-iv-2f"),),
            blocks=("gate",),
            fields=("predetermined_changes",),
        ),
        Requirement(
            "Annex IV 2(g)",
            "Validation and testing",
            "Validation and testing procedures and data, accuracy and robustness metrics, possibly "
            "discriminatory impacts, test logs and reports dated and signed by the responsible persons.",
            refs=(_eu("annex-iv-2g"),),
            families=("train", "robustness", "fairness", "privacy"),
            blocks=("outcomes",),
            fields=("test_sign_off",),
            expects=("robustness", "fairness"),
        ),
        Requirement(
            "Annex IV 2(h)",
            "Cybersecurity measures",
            "The cybersecurity measures put in place.",
            refs=(_eu("annex-iv-2h"),),
            families=("privacy",),
            blocks=("signing", "ledger"),
            fields=("cybersecurity",),
        ),
        Requirement(
            "Annex IV 3",
            "Monitoring, functioning and control",
            "Capabilities and limitations, accuracy for specific groups and overall, foreseeable unintended "
            "outcomes and risks, human oversight measures, input data specifications.",
            refs=(_eu("annex-iv-3"),),
            families=("fairness", "explainability"),
            blocks=("limitations", "interfaces"),
            fields=("capabilities_and_limitations", "foreseeable_risks", "human_oversight"),
        ),
        Requirement(
            "Annex IV 4",
            "Appropriateness of the performance metrics",
            "Why the performance metrics chosen are appropriate for the system.",
            refs=(_eu("annex-iv-4"),),
            blocks=("policy_pack",),
            fields=("metrics_rationale",),
        ),
        Requirement(
            "Annex IV 5",
            "Risk management system",
            "A detailed description of the risk management system (Art. 9).",
            refs=(_eu("annex-iv-5"), _eu("art9")),
            blocks=("gate",),
            fields=("risk_management",),
        ),
        Requirement(
            "Annex IV 6",
            "Changes through the lifecycle",
            "Relevant changes made by the provider to the system through its lifecycle.",
            refs=(_eu("annex-iv-6"),),
            blocks=("timeline",),
        ),
        Requirement(
            "Annex IV 7",
            "Harmonised standards",
            "Harmonised standards applied, or the other solutions used to meet the requirements.",
            refs=(_eu("annex-iv-7"),),
            fields=("harmonised_standards",),
        ),
        Requirement(
            "Annex IV 8",
            "EU declaration of conformity",
            "A copy of the EU declaration of conformity.",
            refs=(_eu("annex-iv-8"),),
            fields=("declaration_of_conformity",),
        ),
        Requirement(
            "Annex IV 9",
            "Post-market monitoring",
            "The system to evaluate performance after placing on the market, with the post-market "
            "monitoring plan (Art. 72).",
            refs=(_eu("annex-iv-9"), _eu("art72")),
            families=("drift",),
            monitor=True,
            fields=("post_market_monitoring_plan",),
            expects=(MONITOR,),
        ),
    ),
    crosswalk=(
        Requirement(
            "Art. 9",
            "Risk management system",
            "Identify, estimate and evaluate risks; test against metrics and thresholds defined beforehand.",
            refs=(_eu("art9"),),
            blocks=("policy_pack", "gate"),
            fields=("risk_management", "foreseeable_risks"),
        ),
        Requirement(
            "Art. 10",
            "Data and data governance",
            "Data origin, preparation, suitability, examination for biases and measures against them, gaps.",
            refs=(_eu("art10"),),
            families=("data", "fairness"),
            blocks=("dataset",),
            fields=("data_governance",),
            expects=("data", "fairness"),
        ),
        Requirement(
            "Art. 12",
            "Record-keeping",
            "Automatic logging over the lifetime, enough to identify risks and substantial modifications.",
            refs=(_eu("art12"),),
            families=("provenance",),
            blocks=("ledger", "timeline"),
        ),
        Requirement(
            "Art. 13",
            "Transparency and information to deployers",
            "Provider identity, intended purpose, tested accuracy/robustness/cybersecurity, risks, "
            "explanation capabilities, input data, oversight, logs.",
            refs=(_eu("art13"),),
            families=("explainability",),
            blocks=("interfaces", "outcomes"),
            fields=("provider", "intended_purpose", "instructions_for_use", "capabilities_and_limitations"),
        ),
        Requirement(
            "Art. 14",
            "Human oversight",
            "Understand limits, detect anomalies, interpret outputs, override, and stop in a safe state.",
            refs=(_eu("art14"),),
            families=("explainability",),
            fields=("human_oversight", "user_interface"),
        ),
        Requirement(
            "Art. 15",
            "Accuracy, robustness and cybersecurity",
            "Declared accuracy metrics; resilience to errors, faults and attacks (poisoning, adversarial "
            "examples, confidentiality attacks).",
            refs=(_eu("art15"),),
            families=("robustness", "privacy"),
            blocks=("signing", "ledger"),
            fields=("cybersecurity",),
            expects=("robustness",),
        ),
        Requirement(
            "Art. 72",
            "Post-market monitoring",
            "A post-market monitoring system and plan that collects and analyses performance data.",
            refs=(_eu("art72"),),
            families=("drift",),
            monitor=True,
            fields=("post_market_monitoring_plan",),
            expects=(MONITOR,),
        ),
    ),
)


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
            "Resources for AI systems",
            "Data, tooling, system and computing resources of the AI system are identified and documented.",
            refs=(_iso("A.4"),),
            blocks=("dataset", "software", "compute"),
        ),
        Requirement(
            "A.5",
            "Assessing impacts of AI systems",
            "Impacts of the AI system on individuals, groups and societies are assessed and documented.",
            refs=(_iso("A.5"),),
            families=("fairness",),
            fields=("impact_assessment",),
            expects=("fairness",),
        ),
        Requirement(
            "A.6.2",
            "AI system life cycle",
            "The life cycle of the AI system is defined and its development is documented.",
            refs=(_iso("A.6.2"),),
            blocks=("method", "timeline"),
        ),
        Requirement(
            "A.6.2.4",
            "AI system verification and validation",
            "Verification and validation measures and their criteria are defined and applied.",
            refs=(_iso("A.6.2.4"),),
            families=("train", "robustness", "explainability", "privacy", "fairness"),
            blocks=("policy_pack", "outcomes"),
            expects=("robustness",),
        ),
        Requirement(
            "A.6.2.6",
            "AI system operation and monitoring",
            "Operation and monitoring of the AI system are defined and performed.",
            refs=(_iso("A.6.2.6"),),
            families=("drift",),
            monitor=True,
            fields=("post_market_monitoring_plan",),
            expects=(MONITOR,),
        ),
        Requirement(
            "A.6.2.7",
            "AI system technical documentation",
            "Technical documentation of the AI system is provided to the relevant interested parties.",
            refs=(_iso("A.6.2.7"),),
            blocks=("identity", "architecture", "signing"),
        ),
        Requirement(
            "A.6.2.8",
            "AI system recording of event logs",
            "Event logs are recorded at the phases of the life cycle where they are needed.",
            refs=(_iso("A.6.2.8"),),
            families=("provenance",),
            blocks=("ledger",),
        ),
        Requirement(
            "A.7.3",
            "Acquisition of data",
            "How data for the AI system is acquired and selected is determined and documented.",
            refs=(_iso("A.7.3"), _iso("A.7")),
            blocks=("dataset",),
            fields=("data_governance",),
        ),
        Requirement(
            "A.7.4",
            "Quality of data for AI systems",
            "Data quality requirements are defined and the data is checked against them.",
            refs=(_iso("A.7.4"),),
            families=("data",),
            expects=("data",),
        ),
        Requirement(
            "A.7.5",
            "Data provenance",
            "The provenance of data used in the AI system is recorded over its life cycle.",
            refs=(_iso("A.7.5"),),
            families=("provenance",),
            blocks=("dataset",),
        ),
        Requirement(
            "A.7.6",
            "Data preparation",
            "Criteria and methods for preparing data are defined and documented.",
            refs=(_iso("A.7.6"),),
            fields=("data_governance",),
        ),
        Requirement(
            "A.8",
            "Information for interested parties",
            "Users and other interested parties get the information they need about the AI system.",
            refs=(_iso("A.8"),),
            blocks=("signing",),
            fields=("instructions_for_use", "capabilities_and_limitations"),
        ),
        Requirement(
            "A.10",
            "Third-party and customer relationships",
            "Responsibilities towards suppliers of data, models and tools, and towards customers, are set.",
            refs=(_iso("A.10"),),
            blocks=("software", "method"),
            fields=("third_parties",),
        ),
    ),
)

FRAMEWORKS: dict[str, Framework] = {f.id: f for f in (EU_AI_ACT, NIST_AI_RMF, ISO_42001)}


def get_framework(name: str) -> Framework:
    """Return the framework called ``name``; TrustaiUserError names the known ones otherwise."""
    if name not in FRAMEWORKS:
        raise TrustaiUserError(
            f"unknown framework {name!r}", fix=f"use one of: {', '.join(sorted(FRAMEWORKS))}"
        )
    return FRAMEWORKS[name]
