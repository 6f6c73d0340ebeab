"""ECDSA P-256 signing keys for model signatures: where they live and how they are created."""

import contextlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustai.errors import TrustaiUserError

PRIVATE_KEY_NAME = "signing-key.pem"
PUBLIC_KEY_NAME = "signing-key.pub"


def default_key_paths() -> tuple[Path, Path]:
    """Return ``(private, public)`` key paths: ``$TRUSTAI_HOME`` if set, else ``~/.config/trustai``."""
    home = os.environ.get("TRUSTAI_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".config" / "trustai"
    return base / PRIVATE_KEY_NAME, base / PUBLIC_KEY_NAME


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with exactly ``mode`` and write ``data``; never replaces an existing file."""
    # O_EXCL makes creation and the existence check one step (no clobbering, no symlink following),
    # and the mode is set at creation so a private key is never readable by others, even briefly.
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    try:
        # The umask may have narrowed the mode; pin it so the promise holds whatever the umask.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if fd != -1:
            os.close(fd)
        # A half-written key is worse than none: it would block the next attempt and fail to load.
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def generate_keypair(private_path: Path, public_path: Path) -> None:
    """Create a new ECDSA P-256 key pair as PEM files.

    The private key is unencrypted PKCS#8 with mode 0600 from the moment it exists; the public key is
    SubjectPublicKeyInfo with mode 0644. Parent folders are created. Existing files are never
    overwritten: if either path exists, nothing is written and ``TrustaiUserError`` is raised. Key
    material is never printed or logged.
    """
    private_path, public_path = Path(private_path), Path(public_path)
    if private_path.resolve() == public_path.resolve():
        raise TrustaiUserError(
            "the private and public key paths are the same file",
            str(private_path),
            "pass two different paths, e.g. signing-key.pem and signing-key.pub",
        )
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise TrustaiUserError(
                "refusing to overwrite an existing key file",
                str(path),
                "keep the existing key, or move it away first if you really want a new one",
            )

    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    written: list[Path] = []
    current = private_path
    try:
        for path, data, mode in ((private_path, private_pem, 0o600), (public_path, public_pem, 0o644)):
            current = path
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_new_file(path, data, mode)
            written.append(path)
    except OSError as err:
        # Leave no half pair behind: a lone private key without its public key is useless and confusing.
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        if isinstance(err, FileExistsError):
            raise TrustaiUserError(
                "refusing to overwrite an existing key file",
                str(current),
                "keep the existing key, or move it away first if you really want a new one",
            ) from None
        raise TrustaiUserError(
            f"cannot write the key file ({err.strerror or err})",
            str(current),
            "choose a writable location (set TRUSTAI_HOME or pass explicit key paths)",
        ) from None
