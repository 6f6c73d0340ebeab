"""Compliance report builders and templates."""
