"""Find private key material in files: the PEM body (whole and line by line), the DER encoding and the
private scalar (raw and hex)."""

import base64
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def key_fragments(private_key: Path) -> list[bytes]:
    """Byte strings any one of which in a file means the private key leaked into it."""
    pem = private_key.read_bytes()
    lines = [line for line in pem.splitlines() if line and not line.startswith(b"-----")]
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    der = base64.b64decode(b"".join(lines))
    return [b"".join(lines), *(line for line in lines if len(line) >= 16), der, scalar, scalar.hex().encode()]


def files_leaking(private_key: Path, roots: list[Path]) -> list[Path]:
    """Every regular file under ``roots`` (or a root that is a file) holding a fragment of the key."""
    fragments = key_fragments(private_key)
    files = [p for root in roots for p in ([root] if root.is_file() else root.rglob("*"))]
    return [p for p in files if p.is_file() and not p.is_symlink() and _holds_any(p.read_bytes(), fragments)]


def _holds_any(data: bytes, fragments: list[bytes]) -> bool:
    return any(f in data for f in fragments)
