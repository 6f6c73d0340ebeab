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
import contextlib
import contextvars
import json
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import model_signing
from cryptography.exceptions import UnsupportedAlgorithm
from model_signing._hashing import hashing as hashing_engines
from model_signing._hashing import io as hashing_io
from model_signing._hashing import memory as hashing_memory

from trustai.attest.keys import public_key_fingerprint
from trustai.core.canonical import file_sha256
from trustai.core.manifest import PICKLE_SUFFIXES
from trustai.errors import TrustaiUserError

SIGNATURE_NAME = "model.sig"
# The largest file trustai signs or hashes to verify: a 16-billion-parameter policy in fp32. Verifying
# names a bigger file instead of hashing it, so a planted multi-terabyte file costs nothing.
MAX_FILE_BYTES = 64 << 30
# A bundle lists one digest per file (about 150 bytes each); this is some 400,000 files.
MAX_SIGNATURE_BYTES = 64 << 20

# The curves model_signing's key signer and verifier accept.
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


def _hashing_config(config: model_signing.hashing.Config) -> model_signing.hashing.Config:
    """Set ``config`` to sha256 per file, no symlinks, everything but the signature itself (git
    metadata included); return it."""
    config.use_file_serialization(hashing_algorithm="sha256")
    config.set_ignored_paths(paths=[SIGNATURE_NAME], ignore_git_paths=False)
    config.set_allow_symlinks(False)
    return config


class FileDigests:
    """The sha256 of each file read during one operation, each file read once: keyed by its resolved
    path and its ``stat`` identity (device, inode, size, mtime, ctime), so a file changed meanwhile is
    read again. Lives only as long as the operation (``reading_once``), never on disk."""

    def __init__(self) -> None:
        self._digests: dict[tuple, str] = {}
        self._lock = threading.Lock()
        self.reads = 0  # files actually read

    def sha256(self, path: Path) -> str:
        """The file's sha256, read now unless this operation already read it unchanged."""
        st = Path(path).stat()
        key = (str(Path(path).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            known = self._digests.get(key)
        if known is not None:
            return known
        digest = file_sha256(Path(path))
        with self._lock:
            self._digests[key] = digest
            self.reads += 1
        return digest


_READING: contextvars.ContextVar[FileDigests | None] = contextvars.ContextVar("trustai_reading", default=None)


@contextlib.contextmanager
def reading_once() -> Iterator[FileDigests]:
    """Within the block, ``verify_folder`` hashes each file through one ``FileDigests`` (yielded, so the
    caller computes other digests, e.g. ``weights_digest``, from the same reads): verifying a
    checkpoint and taking its weights digest read the weights once."""
    digests = FileDigests()
    token = _READING.set(digests)
    try:
        yield digests
    finally:
        _READING.reset(token)


class _RememberedFileHasher(hashing_io.SimpleFileHasher):
    """model_signing's sha256 file hasher, taking the digest from a FileDigests."""

    def __init__(self, file: Path, digests: FileDigests):
        super().__init__(file, hashing_memory.SHA256())
        self._digests = digests

    def compute(self) -> hashing_engines.Digest:
        """The file's sha256, read at most once per ``reading_once`` block."""
        return hashing_engines.Digest(self.digest_name, bytes.fromhex(self._digests.sha256(self._file)))


class _SignedFilesHashing(model_signing.hashing.Config):
    """Verification's hashing: only files the authenticated signature lists, each a regular file of
    at most MAX_FILE_BYTES, so the bytes hashed are bounded by what the signature covers. Every other
    file is named in ``problems`` before anything is hashed."""

    def __init__(self, sizes: dict[str, int]) -> None:
        super().__init__()
        _hashing_config(self)
        self.sizes = sizes  # the regular files on disk, relative path -> bytes
        # model_signing authenticates the bundle before it hashes anything, so reaching hash() means
        # the signature is genuine for the key and any failure is about the files. This tells "bad
        # signature" from "changed files" without parsing exception messages.
        self.reached_hashing = False
        self.ignored: list[str] = [SIGNATURE_NAME]
        self.problems: list[str] = []
        self.named: set[str] = set()  # files in ``problems``, left unhashed
        self.digests: dict[str, str] | None = None  # what was hashed, once hashing finished

    def _build_file_hasher_factory(self, hashing_algorithm: Any = "sha256", *args: Any, **kwargs: Any) -> Any:
        """model_signing's factory, or within ``reading_once`` one that reads each file once."""
        digests = _READING.get()  # taken here, on the caller's thread: hashing runs on a thread pool
        if digests is None or hashing_algorithm != "sha256":
            return super()._build_file_hasher_factory(hashing_algorithm, *args, **kwargs)

        def factory(path: Path) -> hashing_io.FileHasher:
            return _RememberedFileHasher(path, digests)

        return factory

    def add_ignored_paths(self, *, model_path: Any, paths: Any) -> None:
        """Note the signature's own ignore_paths (model_signing adds them once it is authenticated)."""
        paths = list(paths)
        self.ignored += [PurePosixPath(p).as_posix() for p in paths]
        super().add_ignored_paths(model_path=model_path, paths=paths)

    def hash(self, model_path: Any, *, files_to_hash: Any = None) -> model_signing.manifest.Manifest:
        """Name unsigned, oversized and unreadable files, then hash the signed files that are left.

        ``files_to_hash`` is the authenticated list of signed files (``set_ignore_unsigned_files``).
        """
        self.reached_hashing = True
        root = Path(model_path)
        signed = {Path(p).relative_to(root).as_posix() for p in files_to_hash}
        for rel, size in sorted(self.sizes.items()):
            if rel not in signed and not _is_ignored(rel, tuple(self.ignored)):
                self._name(rel, "added after signing (not covered by the signature; not hashed)")
            elif rel in signed and size > MAX_FILE_BYTES:
                self._name(rel, f"{size} bytes, over the {MAX_FILE_BYTES}-byte limit (not hashed)")
            elif rel in signed and not os.access(root / rel, os.R_OK):
                self._name(rel, "cannot be read (permission denied)")
        hashable = [root / rel for rel in sorted(signed) if rel in self.sizes and rel not in self.named]
        manifest = super().hash(model_path, files_to_hash=hashable)
        self.digests = {rd.identifier: rd.digest.digest_hex for rd in manifest.resource_descriptors()}
        return manifest

    def _name(self, rel: str, problem: str) -> None:
        self.problems.append(f"{rel}: {problem}")
        self.named.add(rel)


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


def _scan(folder: Path) -> tuple[dict[str, int], list[str], list[str]]:
    """Walk ``folder`` without following links or reading any file: (regular files with their sizes in
    bytes, symlinks, other non-files), relative and sorted."""
    files: dict[str, int] = {}
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
                mode = path.lstat()
                if stat.S_ISREG(mode.st_mode):
                    files[rel] = mode.st_size
                else:
                    odd.append(rel)
    return dict(sorted(files.items())), sorted(links), sorted(odd)


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


def refuse_pickle_files(folder: Path) -> None:
    """Raise ``TrustaiUserError`` naming every pickle-format file (``*.bin``, ``*.pt``, ``*.pth``,
    ``*.ckpt``, ``*.pkl``, ``*.pickle``) under ``folder``; return quietly when there is none."""
    folder = Path(folder)
    pickled = sorted(
        Path(root, name).relative_to(folder).as_posix()
        for root, _, names in os.walk(folder, followlinks=False)
        for name in names
        if PurePosixPath(name).suffix.lower() in PICKLE_SUFFIXES
    )
    if pickled:
        # A signature would vouch for files that run arbitrary code when loaded.
        raise TrustaiUserError(
            f"refusing to sign pickle-format files: {', '.join(pickled)}",
            str(folder),
            "remove them: trustai signs model folders whose weights are safetensors only",
        )


def sign_folder(folder: Path, private_key: Path) -> Path:
    """Sign every file under ``folder`` (recursively) as one unit; return the path of the signature.

    Writes ``folder/model.sig`` (replacing an older one), which the stock
    ``model_signing verify key`` CLI accepts (see the module docstring for the command). Raises
    ``TrustaiUserError``, writing nothing, if the folder is missing, empty, contains symbolic links,
    special files or pickle-format files, or the private key is missing or not an unencrypted EC
    private key.
    """
    folder = _existing_folder(folder)
    refuse_pickle_files(folder)
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
    oversized = [rel for rel, size in files.items() if size > MAX_FILE_BYTES]
    if oversized:
        raise TrustaiUserError(
            f"refusing to sign files over {MAX_FILE_BYTES} bytes (verifying would not hash them): "
            f"{', '.join(oversized)}",
            str(folder),
            "keep each file of the model folder under the limit (shard large weights)",
        )

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
        config.set_hashing_config(_hashing_config(model_signing.hashing.Config())).sign(folder, signature)
    except (OSError, ValueError) as err:
        raise TrustaiUserError(
            f"signing failed: {err}", str(folder), "check the folder is readable"
        ) from None
    return signature


def _is_ignored(rel: str, ignore_paths: tuple[str, ...]) -> bool:
    """Same rule as model_signing: a path is ignored if it is, or is under, an ignored path."""
    path = PurePosixPath(rel)
    return any(path.is_relative_to(PurePosixPath(p)) for p in ignore_paths)


def _file_problems(signature: Path, digests: dict[str, str], skip: set[str]) -> list[str] | None:
    """Name every changed and missing signed file, from the files' ``digests`` (not hashed again); None
    if the bundle is not per-file sha256."""
    try:
        manifest = _read_signed_manifest(signature)
    except TrustaiUserError:
        return None
    if manifest.method != "files" or any(alg != "sha256" for alg, _ in manifest.resources.values()):
        return None
    problems = []
    for name, (_, expected) in sorted(manifest.resources.items()):
        if name in skip:
            continue  # already reported (link, special file, unsigned, oversized or unreadable)
        if name not in digests:
            problems.append(f"{name}: missing (it was signed)")
        elif digests[name] != expected:
            problems.append(
                f"{name}: changed since signing (signed sha256 {expected[:16]}…, now {digests[name][:16]}…)"
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
    missing, added, over MAX_FILE_BYTES, symbolic links, special files, and ``model.sig`` itself when
    the signature is missing, invalid, over MAX_SIGNATURE_BYTES or made by another key. Only files the
    signature covers are hashed, each at most once; added and oversized files are named unread.
    Raises ``TrustaiUserError`` only for unusable input: the folder does not exist, or the public key
    cannot be read or is not an EC public key.
    """
    folder = _existing_folder(folder)
    public_key = Path(public_key)
    key_id = public_key_fingerprint(public_key)
    signature = folder / SIGNATURE_NAME
    files, links, odd = _scan(folder)
    problems = [f"{rel}: is a symbolic link (signed folders may not contain links)" for rel in links]
    problems += [f"{rel}: is not a regular file" for rel in odd]

    if signature.is_symlink():
        return VerifyResult(ok=False, problems=problems)  # named above; never follow it
    if not signature.is_file():
        problems.append(f"{SIGNATURE_NAME}: signature file is missing")
        return VerifyResult(ok=False, problems=problems)

    if signature.stat().st_size > MAX_SIGNATURE_BYTES:
        problems.append(f"{SIGNATURE_NAME}: larger than {MAX_SIGNATURE_BYTES} bytes (refused, not read)")
        return VerifyResult(ok=False, problems=problems)

    hashing = _SignedFilesHashing(files)
    error: Exception | None = None
    try:
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public_key).set_hashing_config(
            hashing
        ).set_ignore_unsigned_files(True).verify(folder, signature)
    except Exception as err:  # model_signing raises ValueError, InvalidSignature, KeyError, ...
        error = err

    if not hashing.reached_hashing:
        problems.append(_signature_problem(signature, public_key, key_id, error))
        return VerifyResult(ok=False, problems=problems)
    problems += hashing.problems
    if error is not None:
        skip = set(links) | set(odd) | hashing.named
        found = _file_problems(signature, hashing.digests, skip) if hashing.digests is not None else None
        if found is None or not (found or problems):
            # Not a per-file sha256 bundle (e.g. signed elsewhere with shards), or hashing failed: fall
            # back to model_signing's own words, which name the files too, just less readably.
            found = [f"{SIGNATURE_NAME}: {_describe(error)}"]
        problems += found
    return VerifyResult(ok=not problems, problems=problems)
