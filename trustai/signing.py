"""Sign a model folder as one unit and verify it, with sigstore's ``model_signing`` (ECDSA key mode).

The signature is a Sigstore bundle written INSIDE the signed folder as ``model.sig``. It covers every
other file under the folder, recursively, git metadata included; the signature file itself is left
out of hashing and that exclusion is recorded in the signed manifest (``ignore_paths``).

Anyone can check a signed folder with the stock model-signing CLI, without trustai::

    model_signing verify key --signature DIR/model.sig --public_key signing-key.pub \\
        --no-ignore-git-paths DIR

No ``--ignore-paths`` is needed: the CLI always leaves the ``--signature`` file out of hashing, and it
also honours the ``ignore_paths`` recorded in the signature. ``--no-ignore-git-paths`` only matters
when DIR holds git metadata (``.git/``, ``.gitattributes``, ``.github/``, ``.gitignore``): the CLI
skips those by default while trustai signs them, so without the flag such a folder fails with
"Missing files". For a folder without git metadata the bare command works too::

    model_signing verify key --signature DIR/model.sig --public_key signing-key.pub DIR

The equivalent stock signing command is
``model_signing sign key --private_key signing-key.pem --signature DIR/model.sig --no-ignore-git-paths DIR``.
"""

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import model_signing
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustai.canonical import file_sha256, sha256_hex
from trustai.errors import TrustaiUserError

SIGNATURE_NAME = "model.sig"

# The curves model_signing's key signer and verifier accept.
_SUPPORTED_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
_RESIGN = "sign the folder again with trustai (this replaces model.sig)"


@dataclass
class VerifyResult:
    """Outcome of ``verify_folder``: ``ok`` is True only if ``problems`` is empty.

    Every problem starts with the path (relative to the folder) it is about.
    """

    ok: bool
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _SignedManifest:
    """What a signature bundle claims was signed; read without checking the signature."""

    method: str
    ignore_paths: tuple[str, ...]
    resources: dict[str, tuple[str, str]]  # relative path -> (algorithm, hex digest)


class _HashingConfig(model_signing.hashing.Config):
    """The stock hashing config, noting whether model_signing got as far as hashing the folder."""

    # model_signing.verifying.Config.verify authenticates the bundle before it hashes anything, so
    # reaching hash() means the signature is genuine for the key and any failure is about the files.
    # This tells "bad signature" from "changed files" without parsing exception messages.
    reached_hashing = False

    def hash(self, model_path: Any, *, files_to_hash: Any = None) -> model_signing.manifest.Manifest:
        self.reached_hashing = True
        return super().hash(model_path, files_to_hash=files_to_hash)


def _hashing_config() -> _HashingConfig:
    """sha256 per file, no symlinks, everything but the signature itself (git metadata included)."""
    config = _HashingConfig()
    config.use_file_serialization(hashing_algorithm="sha256")
    config.set_ignored_paths(paths=[SIGNATURE_NAME], ignore_git_paths=False)
    config.set_allow_symlinks(False)
    return config


def _existing_folder(folder: Path) -> Path:
    """Return ``folder`` as an absolute path, or raise ``TrustaiUserError`` if it is not a folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrustaiUserError(
            "no such folder" if not folder.exists() else "not a folder",
            str(folder),
            "pass the model folder, e.g. a checkpoint's pretrained_model/ folder",
        )
    # A link TO the folder (like LeRobot's checkpoints/last) is fine; links inside it are not.
    return folder.resolve()


def _scan(folder: Path) -> tuple[list[str], list[str], list[str]]:
    """Walk ``folder`` without following links: (regular files, symlinks, other non-files), relative."""
    files: list[str] = []
    links: list[str] = []
    odd: list[str] = []

    def fail(err: OSError) -> None:
        raise TrustaiUserError(
            f"cannot read part of the folder ({err.strerror or err})",
            str(err.filename or folder),
            "make every file and subfolder readable",
        )

    for root, dirnames, filenames in os.walk(folder, onerror=fail, followlinks=False):
        for name in dirnames + filenames:
            path = Path(root, name)
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                links.append(rel)
            elif name in filenames:
                (files if path.is_file() else odd).append(rel)
    return sorted(files), sorted(links), sorted(odd)


def _read_signed_manifest(signature: Path) -> _SignedManifest:
    """Parse bundle -> DSSE payload -> in-toto statement -> predicate; no signature check here."""
    try:
        bundle = json.loads(signature.read_text(encoding="utf-8"))
        statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"], validate=True))
        predicate = statement["predicate"]
        serialization_args = predicate["serialization"]
        resources = {str(r["name"]): (str(r["algorithm"]), str(r["digest"])) for r in predicate["resources"]}
        return _SignedManifest(
            method=str(serialization_args["method"]),
            ignore_paths=tuple(str(p) for p in serialization_args.get("ignore_paths", ())),
            resources=resources,
        )
    except OSError as err:
        raise TrustaiUserError(
            f"cannot read the signature ({err.strerror or err})", str(signature), _RESIGN
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
        raise TrustaiUserError(
            f"not a model_signing signature bundle ({type(err).__name__}: {err})", str(signature), _RESIGN
        ) from None


def _public_key_id(public_key: Path) -> str:
    """Check ``public_key`` is a usable EC public key; return the key id model_signing puts in bundles."""
    try:
        data = Path(public_key).read_bytes()
    except OSError as err:
        raise TrustaiUserError(
            f"cannot read the public key ({err.strerror or err})",
            str(public_key),
            "pass the signer's public key file (signing-key.pub)",
        ) from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _SUPPORTED_CURVES:
        raise TrustaiUserError(
            "not a PEM ECDSA (P-256, P-384 or P-521) public key",
            str(public_key),
            "pass the signer's public key file (signing-key.pub), not the private key",
        )
    # model_signing's key id ("hint"): sha256 of the PEM SubjectPublicKeyInfo encoding.
    return sha256_hex(
        key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def sign_folder(folder: Path, private_key: Path) -> Path:
    """Sign every file under ``folder`` (recursively) as one unit; return the path of the signature.

    Writes ``folder/model.sig`` (replacing an older one), which the stock
    ``model_signing verify key`` CLI accepts (see the module docstring for the command). Raises
    ``TrustaiUserError``, writing nothing, if the folder is missing, empty, contains symbolic links or
    special files, or the private key is missing or not an unencrypted EC private key.
    """
    folder = _existing_folder(folder)
    files, links, odd = _scan(folder)
    if links:
        raise TrustaiUserError(
            f"refusing to sign a folder that contains symbolic links: {', '.join(links)}",
            str(folder),
            "replace each link with a copy of the file it points to, or remove it",
        )
    if odd:
        raise TrustaiUserError(
            f"refusing to sign a folder that contains special files: {', '.join(odd)}",
            str(folder),
            "remove the pipes, sockets or device files from the folder",
        )
    if not [f for f in files if f != SIGNATURE_NAME]:
        raise TrustaiUserError("the folder has no files to sign", str(folder), "sign the saved model folder")

    private_key = Path(private_key)
    fix_key = "pass the private key written by generate_keypair (signing-key.pem)"
    try:
        config = model_signing.signing.Config().use_elliptic_key_signer(private_key=private_key)
    except OSError as err:
        raise TrustaiUserError(
            f"cannot read the private key ({err.strerror or err})", str(private_key), fix_key
        ) from None
    except (ValueError, TypeError, AttributeError, UnsupportedAlgorithm):
        # Deliberately no detail from the key parser: never echo anything derived from key material.
        raise TrustaiUserError(
            "not an unencrypted PEM ECDSA (P-256, P-384 or P-521) private key", str(private_key), fix_key
        ) from None

    signature = folder / SIGNATURE_NAME
    try:
        config.set_hashing_config(_hashing_config()).sign(folder, signature)
    except (OSError, ValueError) as err:
        raise TrustaiUserError(
            f"signing failed: {err}", str(folder), "check the folder is readable"
        ) from None
    return signature


def signed_files(folder: Path) -> dict[str, str]:
    """Return relative path -> sha256 hex digest for every file recorded in ``folder/model.sig``.

    This reads the bundle WITHOUT checking the signature: it is for reports, not for trust (use
    ``verify_folder`` for that). Raises ``TrustaiUserError`` if there is no readable signature or it
    does not record per-file sha256 digests.
    """
    signature = _existing_folder(folder) / SIGNATURE_NAME
    if not signature.is_file() or signature.is_symlink():
        raise TrustaiUserError("the folder has no signature file", str(signature), "sign the folder first")
    manifest = _read_signed_manifest(signature)
    if manifest.method != "files" or any(alg != "sha256" for alg, _ in manifest.resources.values()):
        raise TrustaiUserError(
            "the signature does not record one sha256 digest per file", str(signature), _RESIGN
        )
    return {name: digest for name, (_, digest) in sorted(manifest.resources.items())}


def _is_ignored(rel: str, ignore_paths: tuple[str, ...]) -> bool:
    """Same rule as model_signing: a path is ignored if it is, or is under, an ignored path."""
    path = PurePosixPath(rel)
    return any(path.is_relative_to(PurePosixPath(p)) for p in ignore_paths)


def _file_problems(folder: Path, signature: Path, files: list[str], skip: set[str]) -> list[str] | None:
    """Name every changed, missing and added file; None if the bundle is not per-file sha256."""
    try:
        manifest = _read_signed_manifest(signature)
    except TrustaiUserError:
        return None
    if manifest.method != "files" or any(alg != "sha256" for alg, _ in manifest.resources.values()):
        return None
    ignore = (*manifest.ignore_paths, SIGNATURE_NAME)
    expected = {name: digest for name, (_, digest) in manifest.resources.items()}
    actual: dict[str, str] = {}
    problems = []
    for rel in files:
        if _is_ignored(rel, ignore):
            continue
        try:
            actual[rel] = file_sha256(folder / rel)
        except OSError as err:
            problems.append(f"{rel}: cannot be read ({err.strerror or err})")
            skip = skip | {rel}

    for name in sorted(expected.keys() | actual.keys()):
        if name in skip:
            continue  # already reported (link, special file or unreadable)
        if name not in actual:
            problems.append(f"{name}: missing (it was signed)")
        elif name not in expected:
            problems.append(f"{name}: added after signing (not covered by the signature)")
        elif actual[name] != expected[name]:
            problems.append(
                f"{name}: changed since signing (signed sha256 {expected[name][:16]}…, "
                f"now {actual[name][:16]}…)"
            )
    return problems


def _describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _is_key_id(text: str) -> bool:
    """True for a model_signing key id: 64 lowercase hex digits (anything else is not printed)."""
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _signature_problem(signature: Path, public_key: Path, key_id: str, err: BaseException | None) -> str:
    """One line saying why model_signing did not accept the signature itself."""
    try:
        hint = json.loads(signature.read_text(encoding="utf-8"))["verificationMaterial"]["publicKey"]["hint"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        hint = None
    # The key id in the bundle is not authenticated, so it only explains a rejection, never grants one.
    if isinstance(hint, str) and _is_key_id(hint) and hint != key_id:
        return (
            f"{SIGNATURE_NAME}: signed by a different key than {public_key} "
            f"(signature key id {hint[:16]}…, this key {key_id[:16]}…)"
        )
    detail = _describe(err) if err is not None else "rejected"
    return f"{SIGNATURE_NAME}: not a valid signature for {public_key} ({detail})"


def verify_folder(folder: Path, public_key: Path) -> VerifyResult:
    """Check ``folder`` against ``folder/model.sig`` and ``public_key``; never raises on a bad signature.

    ``ok`` is True only if model_signing accepts the signature for this key and every file matches
    it, with nothing missing or added. Otherwise ``problems`` names each file at fault: changed,
    missing, added, symbolic links, special files, and ``model.sig`` itself when the signature is
    missing, invalid or made by another key. Raises ``TrustaiUserError`` only for unusable input: the
    folder does not exist, or the public key cannot be read or is not an EC public key.
    """
    folder = _existing_folder(folder)
    public_key = Path(public_key)
    key_id = _public_key_id(public_key)
    signature = folder / SIGNATURE_NAME
    files, links, odd = _scan(folder)
    problems = [f"{rel}: is a symbolic link (signed folders may not contain links)" for rel in links]
    problems += [f"{rel}: is not a regular file" for rel in odd]

    if signature.is_symlink():
        return VerifyResult(ok=False, problems=problems)  # named above; never follow it
    if not signature.is_file():
        problems.append(f"{SIGNATURE_NAME}: signature file is missing")
        return VerifyResult(ok=False, problems=problems)

    hashing = _hashing_config()
    error: Exception | None = None
    try:
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public_key).set_hashing_config(
            hashing
        ).verify(folder, signature)
    except Exception as err:  # model_signing raises ValueError, InvalidSignature, KeyError, ...
        error = err

    if error is None and not problems:
        return VerifyResult(ok=True, problems=[])
    if not hashing.reached_hashing:
        problems.append(_signature_problem(signature, public_key, key_id, error))
        return VerifyResult(ok=False, problems=problems)

    file_problems = _file_problems(folder, signature, files, skip=set(links) | set(odd))
    if file_problems:
        problems += file_problems
    elif error is not None and not problems:
        # Not a per-file sha256 bundle (e.g. signed elsewhere with shards): fall back to model_signing's
        # own words, which name the files too, just less readably.
        problems.append(f"{SIGNATURE_NAME}: {_describe(error)}")
    return VerifyResult(ok=not problems, problems=problems)
