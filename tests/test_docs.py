"""The design documents stay true to the repository: every relative link in README.md and docs/*.md
reaches a file (or heading) inside the repository, every repository path docs/ARCHITECTURE.md and
docs/REGULATORY.md name exists, the "Where each part lives" table names every product module, and
docs/REGULATORY.md covers every reference of the regulatory catalogue.
"""

import re
from pathlib import Path

from trustai.packs.regulatory import REFERENCES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ARCHITECTURE = DOCS / "ARCHITECTURE.md"
REGULATORY = DOCS / "REGULATORY.md"
WHERE_HEADING = "## Where each part lives"
# Folders whose every module the table must name; tests/ and benchmarks/ are named but may run ahead.
PRODUCT = ("trustai", "audits", "training_hooks", "reports", "policies")
REPO_PATH = re.compile(r"(?:trustai|audits|training_hooks|reports|policies|tests|benchmarks|docs)/[\w./-]*")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def prose(markdown: str) -> str:
    """``markdown`` without fenced or indented code blocks (inline code stays)."""
    kept, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and not line.startswith("    "):
            kept.append(line)
    return "\n".join(kept)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """The anchors of every heading in ``markdown``."""
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", prose(markdown), re.MULTILINE)}


def broken_links(doc: Path, markdown: str) -> list[str]:
    """Each relative link of ``doc`` that leaves the repository, names no existing file, or names a
    heading the target does not have."""
    broken = []
    for target in LINK.findall(re.sub(r"`[^`]*`", "", prose(markdown))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve()
        if path and (not file.is_relative_to(ROOT) or not file.is_file()):
            broken.append(f"{doc.name}: {target} (no such file in the repository)")
            continue
        if anchor and (not path or file.suffix == ".md"):
            headings = anchors(file.read_text(encoding="utf-8") if path else markdown)
            if anchor not in headings:
                broken.append(f"{doc.name}: {target} (no such heading)")
    return broken


def named_paths(markdown: str) -> set[str]:
    """The repository paths named in backticks in ``markdown``'s prose."""
    return {code for code in re.findall(r"`([^`]+)`", prose(markdown)) if REPO_PATH.fullmatch(code)}


def missing_paths(markdown: str) -> list[str]:
    """Each repository path named in ``markdown`` that does not exist."""
    return sorted(p for p in named_paths(markdown) if not (ROOT / p).exists())


def where_section(markdown: str) -> str:
    """The "Where each part lives" section of ARCHITECTURE.md."""
    start = markdown.index(WHERE_HEADING)
    end = markdown.find("\n## ", start + len(WHERE_HEADING))
    return markdown[start : end if end != -1 else None]


def unnamed_modules(named: set[str], root: Path = ROOT) -> list[str]:
    """Each module of the product folders under ``root`` that ``named`` does not name (a package
    ``__init__.py`` is named by its folder; an empty one needs no name)."""
    unnamed = []
    for folder in PRODUCT:
        for path in sorted((root / folder).rglob("*")):
            rel = path.relative_to(root).as_posix()
            parts = set(path.relative_to(root).parts)
            if path.suffix not in (".py", ".yaml") or {"__pycache__", "templates"} & parts:
                continue
            if path.name == "__init__.py" and (
                not path.read_text(encoding="utf-8").strip()
                or f"{path.parent.relative_to(root).as_posix()}/" in named
            ):
                continue
            if rel not in named:
                unnamed.append(rel)
    return unnamed


def test_links_resolve_inside_the_repository() -> None:
    docs = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    assert {ARCHITECTURE, REGULATORY} <= set(docs)
    broken = [b for doc in docs for b in broken_links(doc, doc.read_text(encoding="utf-8"))]
    assert not broken, "\n".join(broken)


def test_readme_links_the_design_documents() -> None:
    readme = prose((ROOT / "README.md").read_text(encoding="utf-8"))
    for doc in ("docs/ARCHITECTURE.md", "docs/REGULATORY.md", "docs/distributed.md"):
        assert f"]({doc})" in readme, doc


def test_paths_named_in_the_design_documents_exist() -> None:
    for doc in (ARCHITECTURE, REGULATORY):
        missing = missing_paths(doc.read_text(encoding="utf-8"))
        assert not missing, f"{doc.name} names paths that do not exist: {missing}"


def test_where_each_part_lives_names_every_product_module() -> None:
    named = named_paths(where_section(ARCHITECTURE.read_text(encoding="utf-8")))
    assert len(named) > 100
    unnamed = unnamed_modules(named)
    assert not unnamed, f"add to {ARCHITECTURE.name}'s {WHERE_HEADING!r} table: {unnamed}"


def test_regulatory_covers_every_catalogued_reference() -> None:
    text = REGULATORY.read_text(encoding="utf-8")
    absent = [ref for ref in REFERENCES if f"`{ref}`" not in text]
    assert not absent, f"{REGULATORY.name} lacks rows for {absent}"


def test_the_checks_see_rot(tmp_path: Path) -> None:
    doc = DOCS / "example.md"  # never written: links resolve relative to docs/
    text = "[a](../README.md) [b](gone.md) [c](../../outside.md) [d](#nowhere) [e](https://x.org)\n# Here\n"
    assert broken_links(doc, text.replace("#nowhere", "#here")) == [
        "example.md: gone.md (no such file in the repository)",
        "example.md: ../../outside.md (no such file in the repository)",
    ]
    assert any("#nowhere" in b for b in broken_links(doc, text))
    assert missing_paths("| `trustai/governance.py` | `trustai/gone.py` | `<run>/trustai/x` |") == [
        "trustai/gone.py"
    ]
    (tmp_path / "audits" / "fam").mkdir(parents=True)
    (tmp_path / "audits" / "fam" / "__init__.py").write_text('"""A family."""\n')
    (tmp_path / "audits" / "fam" / "algo.py").write_text("")
    assert unnamed_modules({"audits/fam/"}, tmp_path) == ["audits/fam/algo.py"]
    assert unnamed_modules({"audits/fam/", "audits/fam/algo.py"}, tmp_path) == []
