"""EU AI Act technical documentation: the Annex IV points in order, and the articles (Art. 9-15, 72)
tabulated against the evidence in a crosswalk."""

from trustai.reports.frameworks.base import MONITOR, Framework, Requirement

from trustai.packs.regulatory import EU_AI_ACT_ARTICLES


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
            EU_AI_ACT_ARTICLES["9"],
            "Identify, estimate and evaluate risks; test against metrics and thresholds defined beforehand.",
            refs=(_eu("art9"),),
            blocks=("policy_pack", "gate"),
            fields=("risk_management", "foreseeable_risks"),
        ),
        Requirement(
            "Art. 10",
            EU_AI_ACT_ARTICLES["10"],
            "Data origin, preparation, suitability, examination for biases and measures against them, gaps.",
            refs=(_eu("art10"),),
            families=("data", "fairness"),
            blocks=("dataset",),
            fields=("data_governance",),
            expects=("data", "fairness"),
        ),
        Requirement(
            "Art. 12",
            EU_AI_ACT_ARTICLES["12"],
            "Automatic logging over the lifetime, enough to identify risks and substantial modifications.",
            refs=(_eu("art12"),),
            families=("provenance",),
            blocks=("ledger", "timeline"),
        ),
        Requirement(
            "Art. 13",
            "Transparency and information to deployers",  # shorter than the article's official title
            "Provider identity, intended purpose, tested accuracy/robustness/cybersecurity, risks, "
            "explanation capabilities, input data, oversight, logs.",
            refs=(_eu("art13"),),
            families=("explainability",),
            blocks=("interfaces", "outcomes"),
            fields=("provider", "intended_purpose", "instructions_for_use", "capabilities_and_limitations"),
        ),
        Requirement(
            "Art. 14",
            EU_AI_ACT_ARTICLES["14"],
            "Understand limits, detect anomalies, interpret outputs, override, and stop in a safe state.",
            refs=(_eu("art14"),),
            families=("explainability",),
            fields=("human_oversight", "user_interface"),
        ),
        Requirement(
            "Art. 15",
            EU_AI_ACT_ARTICLES["15"],
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
            EU_AI_ACT_ARTICLES["72"],
            "A post-market monitoring system and plan that collects and analyses performance data.",
            refs=(_eu("art72"),),
            families=("drift",),
            monitor=True,
            fields=("post_market_monitoring_plan",),
            expects=(MONITOR,),
        ),
    ),
)
