"""Lay a report Document out as self-contained HTML, Markdown (with its figures as PNG files beside
it) or PDF (the HTML printed by headless Chromium). HTML and Markdown are byte-identical for the same
Document: nothing in them depends on the time or place of rendering."""

import base64
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import jinja2
from markupsafe import Markup
from trustai.reports.document import Cite, Document

from trustai.errors import TrustaiUserError

FORMATS = ("html", "md", "pdf")
MAX_LISTED_CITES = 8
MAX_NOWRAP_CELL = 12  # HTML table cells this short never break inside a word; longer ones may anywhere
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_TIMEOUT_S = 180


def _cites(cites: list[Cite]) -> list[Cite | None]:
    """The citations to print: all of them, or the first and last few around a None (an ellipsis)."""
    if len(cites) <= MAX_LISTED_CITES:
        return list(cites)
    half = MAX_LISTED_CITES // 2
    return [*cites[:half], None, *cites[-half:]]


# Markdown punctuation that can start markup anywhere in a line: backslash escapes, code spans,
# emphasis (``_`` only at a word's edge; inside a word it is a letter), links and images, table cells,
# headings' closing #s, strikethrough and GitHub's math.
_MD_PUNCTUATION = re.compile(r"[\\`*\[\]|#~$]|(?<![^\W_])_|_(?![^\W_])")
_MD_ENTITY = re.compile(r"&(?=#?\w+;)")
# What makes a block when it starts a line: a quote, a list item, a rule or setext underline (``- ``,
# ``+ ``, ``---``, ``===``), an ordered item (``1. ``, ``1)``). ``-0.5`` or ``1.5 m`` start nothing.
_MD_BLOCK_START = re.compile(r"^(?:>|[-+=](?=[-+= \t]|$)|\d{1,9}(?=[.)](?:[ \t]|$)))")


def markdown_text(value: object) -> Markup:
    """Return ``value`` as Markdown that shows exactly its text on one line, in a paragraph, a heading
    or a table cell, and makes no markup of its own.

    Markdown punctuation is backslash-escaped, HTML tags and character references are written as
    text, a block marker at the start (``-``, ``+``, ``=``, ``>``, ``1.``) is escaped, leading blanks
    (an indented code block) are dropped and line breaks become ``<br>``. Markup (the output of the
    template's own macros, already escaped) is returned as it is.
    """
    if isinstance(value, Markup):
        return value
    text = str(value).replace("\r\n", "\n").replace("\r", "\n").lstrip(" \t")
    text = _MD_PUNCTUATION.sub(lambda m: "\\" + m.group(), text)
    text = _MD_ENTITY.sub("&amp;", text).replace("<", "&lt;")
    text = _MD_BLOCK_START.sub(
        lambda m: m.group() + "\\" if m.group().isdigit() else "\\" + m.group(), text, 1
    )
    return Markup(text.replace("\n", "<br>"))


_BREAK_AFTER = re.compile(r"(?<=[_./:])")
_TOKEN = re.compile(r"[^\s_./:]+")
MAX_TOKEN = 40  # longer runs without a break (a digest, base64) may break anywhere


def breakable(value: object) -> Markup:
    """``value`` as HTML that may wrap after ``_ . / :`` (a ``<wbr>``), so a long column name such as
    ``nonfinite_action_values`` does not widen its table past the page."""
    return Markup("<wbr>").join(Markup.escape(part) for part in _BREAK_AFTER.split(str(value)))


def cell_class(value: object) -> str:
    """The CSS class of an HTML table cell: ``nw`` (never broken) when it is short, ``any`` (broken
    anywhere) when it holds a run of more than MAX_TOKEN characters without a break, else none (broken
    at spaces and after ``_ . / :``). A column is then as wide as its longest word, not one letter."""
    text = str(value)
    if len(text) <= MAX_NOWRAP_CELL:
        return "nw"
    return "any" if any(len(token) > MAX_TOKEN for token in _TOKEN.findall(text)) else ""


def _environment(finalize: Callable[[object], Markup] | None = None) -> jinja2.Environment:
    """The template environment. Values are always escaped: as HTML by Jinja's autoescape or, given
    ``finalize``, by it (it returns Markup, which autoescape leaves alone); macro output is Markup, so
    it is never escaped twice."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("trustai.reports", "templates"),
        autoescape=True,
        finalize=finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["b64"] = lambda data: base64.b64encode(data).decode("ascii")
    env.filters["breakable"] = breakable
    env.filters["cell_class"] = cell_class
    env.filters["cites"] = _cites
    env.globals["max_cites"] = MAX_LISTED_CITES
    return env


def render_html(doc: Document) -> str:
    """Return the report as one HTML page with inline CSS and images as data URIs; a Content
    Security Policy forbids the page any network request."""
    return _environment().get_template("report.html.j2").render(doc=doc)


def render_markdown(doc: Document, figure_dir: str) -> tuple[str, dict[str, bytes]]:
    """Return the report as Markdown and its figures as ``{relative path: PNG bytes}``, the paths
    under ``figure_dir`` (relative to the Markdown file)."""
    files = {f"{figure_dir}/{figure.name}.png": figure.png for figure in doc.figures()}
    text = _environment(markdown_text).get_template("report.md.j2").render(doc=doc, figure_dir=figure_dir)
    return text, files


def find_chromium() -> str:
    """Return the headless Chromium to print with: ``$TRUSTAI_CHROMIUM``, else the first on PATH.

    Raises TrustaiUserError when none is installed.
    """
    chosen = os.environ.get("TRUSTAI_CHROMIUM")
    found = shutil.which(chosen) if chosen else next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if not found:
        raise TrustaiUserError(
            "PDF needs headless Chromium, and none was found",
            where=chosen or "PATH",
            fix="install it (Debian: apt-get install chromium) or set TRUSTAI_CHROMIUM, or use --format html",
        )
    return found


def chromium_args(user_data_dir: Path) -> list[str]:
    """Return the Chromium command line (without the page) that renders a local page headless and
    makes no network connection of its own (no sync, updates, QUIC or background networking)."""
    return [
        find_chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        f"--user-data-dir={user_data_dir}",
    ]


def render_pdf(html: str, out: Path) -> None:
    """Print ``html`` to the PDF file ``out`` with headless Chromium (A4, no header or footer)."""
    with tempfile.TemporaryDirectory(prefix="trustai-pdf-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html, encoding="utf-8")
        target = Path(tmp) / "report.pdf"
        command = [
            *chromium_args(Path(tmp) / "profile"),
            "--no-pdf-header-footer",
            f"--print-to-pdf={target}",
            page.as_uri(),
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise TrustaiUserError(
                f"Chromium did not print the PDF within {CHROMIUM_TIMEOUT_S} s", where=command[0]
            ) from None
        if result.returncode != 0 or not target.is_file() or target.stat().st_size == 0:
            raise TrustaiUserError(
                f"Chromium could not print the PDF (exit {result.returncode}): {result.stderr[-500:]}",
                where=command[0],
                fix="check that `chromium --headless --no-sandbox --print-to-pdf=x.pdf about:blank` works",
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, out)


def write(doc: Document, fmt: str, out: Path) -> list[Path]:
    """Write ``doc`` to ``out`` in ``fmt`` (html, md or pdf); return every file written.

    Markdown figures go to ``<out stem>-figures/`` beside ``out``.
    """
    out = Path(out)
    if fmt not in FORMATS:
        raise TrustaiUserError(f"unknown format {fmt!r}", fix=f"use one of: {', '.join(FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "pdf":
        render_pdf(render_html(doc), out)
        return [out]
    if fmt == "html":
        out.write_text(render_html(doc), encoding="utf-8")
        return [out]
    text, files = render_markdown(doc, f"{out.stem}-figures")
    out.write_text(text, encoding="utf-8")
    written = [out]
    for rel, data in sorted(files.items()):
        path = out.parent / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written
