"""The report pipeline: read the run's ledger, verify the run as it is now, merge the provider's
system.yaml, map everything onto the framework, and write the chosen format."""

from pathlib import Path

from trustai.reports.compose import compose
from trustai.reports.document import Document
from trustai.reports.frameworks import get_framework
from trustai.reports.integrity import check_integrity
from trustai.reports.model import load_run
from trustai.reports.render import FORMATS, write
from trustai.reports.system import load_system

from trustai.attest.keys import resolve_public_key
from trustai.errors import TrustaiUserError


def build_report(
    target: Path, framework: str, *, system: Path | None = None, public_key: Path | None = None
) -> Document:
    """Return the report Document on ``target`` (run folder or checkpoint) for ``framework``.

    Raises TrustaiUserError for an unknown framework, a target no ledger governs, a malformed
    system.yaml or a missing public key file.
    """
    spec = get_framework(framework)
    description, system_sha = load_system(system) if system else (None, None)
    run = load_run(target)
    key = resolve_public_key(public_key)
    integrity = check_integrity(run, key.path if key else None)
    return compose(spec, run, integrity, description, system_sha)


def render_report(
    target: Path,
    framework: str,
    fmt: str | None,
    out: Path | None = None,
    *,
    system: Path | None = None,
    public_key: Path | None = None,
) -> tuple[Document, list[Path]]:
    """Build the report and write it as ``fmt`` to ``out`` (default ``trustai-report-<framework>.<fmt>``
    in the current folder); return the Document (``tampered`` when an integrity check failed) and the
    files written, the report first. ``fmt`` None takes the format from ``out``'s suffix, else html."""
    suffix = out.suffix.lstrip(".") if out else ""
    fmt = fmt or (suffix if suffix in FORMATS else "html")
    if fmt not in FORMATS:
        raise TrustaiUserError(f"unknown format {fmt!r}", fix=f"use one of: {', '.join(FORMATS)}")
    doc = build_report(target, framework, system=system, public_key=public_key)
    return doc, write(doc, fmt, out or Path(f"trustai-report-{framework}.{fmt}"))


def write_report(
    target: Path,
    framework: str,
    fmt: str | None,
    out: Path | None = None,
    *,
    system: Path | None = None,
    public_key: Path | None = None,
) -> list[Path]:
    """``render_report``'s files only."""
    return render_report(target, framework, fmt, out, system=system, public_key=public_key)[1]
