"""Canonical JSON (RFC 8785) and sha256 helpers used for every hash trustai records."""

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import rfc8785


def _clean(value: Any) -> Any:
    """Make a value JSON-safe: non-finite floats become strings so they survive RFC 8785."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of ``value``; NaN/inf are encoded as strings."""
    return rfc8785.dumps(_clean(value))


def sha256_hex(data: bytes) -> str:
    """Return the lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """Return the sha256 of the canonical JSON of ``value``."""
    return sha256_hex(canonical_json(value))


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Return the sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def pretty_json(value: Any) -> str:
    """Return stable, human-readable JSON (sorted keys) for files people read."""
    return json.dumps(_clean(value), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
