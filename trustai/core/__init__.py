"""The evidence core, below everything else: lifecycle stages and the evidence model
(``evidence.py``), canonical JSON and hashes (``canonical.py``), the hash-chained ledger (``ledger.py``)
and its record kinds, the run manifest (``manifest.py``) and the Audit interface with its registry
(``audit.py``). Nothing here imports another trustai layer."""
