"""ECDSA P-256 signing keys for model signatures: where they live, which one a command uses, and how
they are created.

``resolve_signing_key`` and ``resolve_public_key`` are the one place that decides which key a command
signs or verifies with when none is passed; every command goes through them."""

import contextlib
import hashlib
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustai.errors import TrustaiUserError

PRIVATE_KEY_NAME = "signing-key.pem"
PUBLIC_KEY_NAME = "signing-key.pub"


class KeySource(StrEnum):
    """Where the key a command uses came from."""

    GIVEN = "given"  # passed explicitly (--key, --public-key, or a Python argument)
    TRUSTAI_HOME = "$TRUSTAI_HOME"
    DEFAULT = "~/.config/trustai"


@dataclass(frozen=True)
class ResolvedKey:
    """A key file a command will use, and where it came from."""

    path: Path
    source: KeySource


def default_key_paths() -> tuple[Path, Path]:
    """Return ``(private, public)`` key paths: ``$TRUSTAI_HOME`` if set, else ``~/.config/trustai``."""
    home = os.environ.get("TRUSTAI_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".config" / "trustai"
    return base / PRIVATE_KEY_NAME, base / PUBLIC_KEY_NAME


def _default_source() -> KeySource:
    return KeySource.TRUSTAI_HOME if os.environ.get("TRUSTAI_HOME") else KeySource.DEFAULT


def resolve_signing_key(given: Path | None) -> ResolvedKey:
    """The private key to sign with: ``given``, else the default private key (``default_key_paths``).

    Raises TrustaiUserError unless that file holds an unencrypted PEM ECDSA private key, so a missing
    or wrong key fails before anything is trained, audited or written, never when sealing.
    """
    key = (
        ResolvedKey(Path(given), KeySource.GIVEN)
        if given
        else ResolvedKey(default_key_paths()[0], _default_source())
    )
    fix = "run `trustai keys generate` or pass --key PATH (the private signing key, PEM)"
    if not key.path.is_file():
        raise TrustaiUserError("signing key not found", where=str(key.path), fix=fix)
    try:
        loaded = serialization.load_pem_private_key(key.path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        loaded = None  # no detail: never echo anything derived from key material
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise TrustaiUserError("not an unencrypted PEM ECDSA private key", where=str(key.path), fix=fix)
    return key


def resolve_public_key(given: Path | None) -> ResolvedKey | None:
    """The public key to verify signatures with: ``given``, which must exist, else the default public
    key (``default_key_paths``) when it exists, else None (signatures are then not checked).

    Raises TrustaiUserError when ``given`` is not a file.
    """
    if given is not None:
        if not Path(given).is_file():
            raise TrustaiUserError(
                "public key not found", where=str(given), fix="pass the PEM public key the run was signed for"
            )
        return ResolvedKey(Path(given), KeySource.GIVEN)
    default = default_key_paths()[1]
    return ResolvedKey(default, _default_source()) if default.is_file() else None


SUPPORTED_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})  # what model_signing verifies


def load_public_key(public_key: Path) -> ec.EllipticCurvePublicKey:
    """The ECDSA public key in the PEM file ``public_key``.

    Raises TrustaiUserError when the file is unreadable or holds no P-256/P-384/P-521 public key.
    """
    fix = "pass the signer's public key file (signing-key.pub), not the private key"
    try:
        data = Path(public_key).read_bytes()
    except OSError as err:
        raise TrustaiUserError(
            f"cannot read the public key ({err.strerror or err})", str(public_key), fix
        ) from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in SUPPORTED_CURVES:
        raise TrustaiUserError("not a PEM ECDSA (P-256, P-384 or P-521) public key", str(public_key), fix)
    return key


def key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """The sha256 (hex) of the key's PEM SubjectPublicKeyInfo: the key id model_signing records in
    ``model.sig``, and the sha256 of a public key file ``generate_keypair`` wrote."""
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def public_key_fingerprint(public_key: Path) -> str:
    """``key_fingerprint`` of the public key in the file ``public_key`` (see ``load_public_key``)."""
    return key_fingerprint(load_public_key(public_key))


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
