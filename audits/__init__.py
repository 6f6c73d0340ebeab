"""Audits, one package (or module) per family, holding the family's audits and its algorithms:
``data`` (quality, datasheet), ``drift``, ``explainability`` (Captum attributions), ``fairness``,
``privacy`` (DP budget, membership inference, personal data), ``provenance``, ``robustness``
(corruptions, PGD/FGSM attacks, closed loop) and ``train`` (training health). Each audit is a class
registered with ``trustai.core.audit.register`` under ``family.check``; ``_plots`` draws their figures."""
