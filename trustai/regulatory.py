"""The catalogue of regulatory references a policy pack may cite.

Only items listed here are accepted, so a pack can never cite an article or control that does not
exist. Sources: Regulation (EU) 2024/1689 (AI Act), NIST AI RMF 1.0, ISO/IEC 42001:2023 Annex A.
"""

REFERENCES: dict[str, str] = {
    "eu-ai-act:art9": "EU AI Act Art. 9 — Risk management system",
    "eu-ai-act:art10": "EU AI Act Art. 10 — Data and data governance",
    "eu-ai-act:art11": "EU AI Act Art. 11 — Technical documentation (Annex IV)",
    "eu-ai-act:art12": "EU AI Act Art. 12 — Record-keeping",
    "eu-ai-act:art13": "EU AI Act Art. 13 — Transparency and provision of information to deployers",
    "eu-ai-act:art14": "EU AI Act Art. 14 — Human oversight",
    "eu-ai-act:art15": "EU AI Act Art. 15 — Accuracy, robustness and cybersecurity",
    "eu-ai-act:art17": "EU AI Act Art. 17 — Quality management system",
    "eu-ai-act:art18": "EU AI Act Art. 18 — Documentation keeping",
    "eu-ai-act:art72": "EU AI Act Art. 72 — Post-market monitoring",
    **{
        f"eu-ai-act:annex-iv-{p}": f"EU AI Act Annex IV point {p}"
        for p in ["1", "2a", "2b", "2c", "2d", "2e", "2f", "2g", "2h", "3", "4", "5", "6", "7", "8", "9"]
    },
    "nist-ai-rmf:MEASURE-2.1": "NIST AI RMF MEASURE 2.1 — test sets, metrics and TEVV tools documented",
    "nist-ai-rmf:MEASURE-2.3": "NIST AI RMF MEASURE 2.3 — performance under deployment-like conditions",
    "nist-ai-rmf:MEASURE-2.4": "NIST AI RMF MEASURE 2.4 — production monitoring",
    "nist-ai-rmf:MEASURE-2.5": "NIST AI RMF MEASURE 2.5 — validity and reliability, limits of generalisation",
    "nist-ai-rmf:MEASURE-2.6": "NIST AI RMF MEASURE 2.6 — safety",
    "nist-ai-rmf:MEASURE-2.7": "NIST AI RMF MEASURE 2.7 — security and resilience",
    "nist-ai-rmf:MEASURE-2.8": "NIST AI RMF MEASURE 2.8 — transparency and accountability",
    "nist-ai-rmf:MEASURE-2.9": "NIST AI RMF MEASURE 2.9 — explainability and interpretability",
    "nist-ai-rmf:MEASURE-2.10": "NIST AI RMF MEASURE 2.10 — privacy",
    "nist-ai-rmf:MEASURE-2.11": "NIST AI RMF MEASURE 2.11 — fairness and bias",
    "nist-ai-rmf:MEASURE-2.12": "NIST AI RMF MEASURE 2.12 — environmental impact",
    "nist-ai-rmf:MEASURE-2.13": "NIST AI RMF MEASURE 2.13 — effectiveness of TEVV",
    "nist-ai-rmf:MEASURE-3.1": "NIST AI RMF MEASURE 3.1 — tracking emergent risks",
    "iso-42001:A.4": "ISO/IEC 42001 A.4 — Resources for AI systems",
    "iso-42001:A.5": "ISO/IEC 42001 A.5 — Assessing impacts of AI systems",
    "iso-42001:A.6.2": "ISO/IEC 42001 A.6.2 — AI system life cycle",
    "iso-42001:A.6.2.4": "ISO/IEC 42001 A.6.2.4 — AI system verification and validation",
    "iso-42001:A.6.2.6": "ISO/IEC 42001 A.6.2.6 — AI system operation and monitoring",
    "iso-42001:A.6.2.7": "ISO/IEC 42001 A.6.2.7 — AI system technical documentation",
    "iso-42001:A.6.2.8": "ISO/IEC 42001 A.6.2.8 — AI system recording of event logs",
    "iso-42001:A.7": "ISO/IEC 42001 A.7 — Data for AI systems",
    "iso-42001:A.7.3": "ISO/IEC 42001 A.7.3 — Acquisition of data",
    "iso-42001:A.7.4": "ISO/IEC 42001 A.7.4 — Quality of data for AI systems",
    "iso-42001:A.7.5": "ISO/IEC 42001 A.7.5 — Data provenance",
    "iso-42001:A.7.6": "ISO/IEC 42001 A.7.6 — Data preparation",
    "iso-42001:A.8": "ISO/IEC 42001 A.8 — Information for interested parties",
    "iso-42001:A.10": "ISO/IEC 42001 A.10 — Third-party and customer relationships",
}


def describe(reference: str) -> str:
    """Return the human title of a known reference (the id itself when unknown)."""
    return REFERENCES.get(reference, reference)
