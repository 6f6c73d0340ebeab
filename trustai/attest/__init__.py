"""Attestation: the model card built from the ledger (``card.py``), signing a checkpoint folder as one
unit with OpenSSF model-signing (``signing.py``), the signing keys and where they are found
(``keys.py``), and ``trustai verify``'s one verdict over a checkpoint (``verify.py``)."""
