"""The catalogue of regulatory references a policy pack may cite, with the official title of each item.

Only items listed here are accepted, so a pack can never cite an article or control that does not
exist. Sources: Regulation (EU) 2024/1689 (AI Act), NIST AI RMF 1.0, ISO/IEC 42001:2023 Annex A.
The report frameworks (``trustai.reports.frameworks``) take their item titles from here where the
report heading is the official title.
"""

EU_AI_ACT_ARTICLES: dict[str, str] = {
    "9": "Risk management system",
    "10": "Data and data governance",
    "11": "Technical documentation (Annex IV)",
    "12": "Record-keeping",
    "13": "Transparency and provision of information to deployers",
    "14": "Human oversight",
    "15": "Accuracy, robustness and cybersecurity",
    "17": "Quality management system",
    "18": "Documentation keeping",
    "72": "Post-market monitoring",
}
ANNEX_IV_POINTS = ("1", "2a", "2b", "2c", "2d", "2e", "2f", "2g", "2h", "3", "4", "5", "6", "7", "8", "9")
NIST_AI_RMF_MEASURES: dict[str, str] = {
    "2.1": "test sets, metrics and TEVV tools documented",
    "2.3": "performance under deployment-like conditions",
    "2.4": "production monitoring",
    "2.5": "validity and reliability, limits of generalisation",
    "2.6": "safety",
    "2.7": "security and resilience",
    "2.8": "transparency and accountability",
    "2.9": "explainability and interpretability",
    "2.10": "privacy",
    "2.11": "fairness and bias",
    "2.12": "environmental impact",
    "2.13": "effectiveness of TEVV",
    "3.1": "tracking emergent risks",
}
ISO_42001_CONTROLS: dict[str, str] = {
    "A.4": "Resources for AI systems",
    "A.5": "Assessing impacts of AI systems",
    "A.6.2": "AI system life cycle",
    "A.6.2.4": "AI system verification and validation",
    "A.6.2.6": "AI system operation and monitoring",
    "A.6.2.7": "AI system technical documentation",
    "A.6.2.8": "AI system recording of event logs",
    "A.7": "Data for AI systems",
    "A.7.3": "Acquisition of data",
    "A.7.4": "Quality of data for AI systems",
    "A.7.5": "Data provenance",
    "A.7.6": "Data preparation",
    "A.8": "Information for interested parties",
    "A.10": "Third-party and customer relationships",
}

REFERENCES: dict[str, str] = {
    **{f"eu-ai-act:art{n}": f"EU AI Act Art. {n} — {title}" for n, title in EU_AI_ACT_ARTICLES.items()},
    **{f"eu-ai-act:annex-iv-{p}": f"EU AI Act Annex IV point {p}" for p in ANNEX_IV_POINTS},
    **{f"nist-ai-rmf:MEASURE-{s}": f"NIST AI RMF MEASURE {s} — {t}" for s, t in NIST_AI_RMF_MEASURES.items()},
    **{f"iso-42001:{c}": f"ISO/IEC 42001 {c} — {title}" for c, title in ISO_42001_CONTROLS.items()},
}


def describe(reference: str) -> str:
    """Return the human title of a known reference (the id itself when unknown)."""
    return REFERENCES.get(reference, reference)
