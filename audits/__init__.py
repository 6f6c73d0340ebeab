"""Audits, one module per family; each registers its checks with trustai.audit.register."""
