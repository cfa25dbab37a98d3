"""Checks on a rendered write-up: the PDF's layout (nothing past the margins, nothing over the footer) and
the LessWrong Markdown (no raw HTML, narrow tables, images that resolve, math LessWrong renders).

`metasae report` runs the Markdown checks on what it writes and fails on a problem; the tests run both.
"""

from __future__ import annotations

import re
from pathlib import Path

CM = 72 / 2.54  # PDF points per centimetre
MARGIN_X, MARGIN_Y = 2 * CM, 2.2 * CM  # report/index.qmd's page margins
MAX_COLUMNS = 6
HANGING = set(",.;:-–—’'\")")  # Typst lets punctuation hang into the margin (`overhang`), by design
HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(\s[^<>]*)?/?>")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def pdf_layout_problems(
    pdf: str | Path, margin_x: float = MARGIN_X, margin_y: float = MARGIN_Y, tolerance: float = 1.5
) -> list[str]:
    """Text outside the page's text area (character boxes from pdfplumber): past the left or right margin
    or off the page, above the top margin, or below the bottom margin other than the page number, which is
    the footer's only text (a table row down there overlaps it)."""
    import pdfplumber

    problems = []
    with pdfplumber.open(str(pdf)) as doc:
        for number, page in enumerate(doc.pages, 1):
            left, right = margin_x - tolerance, page.width - margin_x + tolerance
            top, bottom = margin_y - tolerance, page.height - margin_y + tolerance
            lines: dict[tuple[str, int], list[str]] = {}
            for char in page.chars:
                if not char["text"].strip():
                    continue
                size = char["size"]
                if char["x0"] < left:
                    where = "past the left margin"
                elif char["x1"] > right and char["text"] not in HANGING:
                    where = "past the right margin"
                elif char["bottom"] - 0.9 * size < top:  # the glyph box's top: its cap height
                    where = "in the top margin"
                elif char["bottom"] - 0.25 * size > bottom:  # the baseline
                    where = "in the footer"
                else:
                    continue
                lines.setdefault((where, round(char["top"])), []).append(char["text"])
            for (where, _), chars in lines.items():
                text = "".join(chars)
                if where == "in the footer" and text == str(number):
                    continue  # the page number
                problems.append(f"page {number}: {text[:40]!r} {where}")
    return problems


def heading_page(pdf: str | Path, heading: str) -> int | None:
    """The 1-based page on which `heading` first appears as text, or None."""
    import pypdf

    for number, page in enumerate(pypdf.PdfReader(str(pdf)).pages, 1):
        if heading in " ".join(page.extract_text().split()):
            return number
    return None


def tables(markdown: str) -> list[list[str]]:
    """The header cells of every pipe table in `markdown`."""
    lines = markdown.splitlines()
    out = []
    for head, rule in zip(lines, lines[1:], strict=False):
        if head.lstrip().startswith("|") and re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", rule) and "-" in rule:
            out.append([c.strip() for c in re.split(r"(?<!\\)\|", head.strip().strip("|"))])
    return out


def prose(markdown: str) -> str:
    """The running text of rendered GitHub Markdown: without tables and the caption paragraph pandoc writes
    under each, code blocks and image lines (a figure's caption is the paragraph under it, counted once)."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    blocks = re.split(r"\n\s*\n", text)
    kept, after_table = [], False
    for block in blocks:
        lines = block.strip().splitlines()
        is_table = bool(lines) and all(line.lstrip().startswith("|") for line in lines)
        if not is_table and not after_table:
            kept.append("\n".join(line for line in lines if not IMAGE.match(line.strip())))
        after_table = is_table
    return "\n\n".join(kept)


def word_count(markdown: str) -> int:
    """Words of `prose(markdown)` before its References: what a reader reads, tables, code and the
    bibliography left out (as a venue's word limit leaves out the references)."""
    return len(prose(markdown.split("\n## References")[0]).split())


def markdown_problems(
    markdown: str, folder: str | Path, image_base_url: str | None = None, max_columns: int = MAX_COLUMNS
) -> list[str]:
    """What would break the Markdown pasted into LessWrong: raw HTML, tables wider than `max_columns`,
    images that neither start with `image_base_url` (where given) nor resolve to a file beside the Markdown,
    and math in delimiters LessWrong does not read (GitHub's $`...`$, \\( \\))."""
    problems = []
    outside_code = re.sub(r"```.*?```", "", markdown, flags=re.S)
    tag = HTML_TAG.search(re.sub(r"`[^`\n]*`", "", outside_code))
    if tag:
        problems.append(f"raw HTML: {tag.group(0)[:40]}")
    for header in tables(outside_code):
        if len(header) > max_columns:
            problems.append(f"a table of {len(header)} columns (at most {max_columns}): {header[:3]}...")
    for url in IMAGE.findall(markdown):
        if image_base_url:
            if not url.startswith(image_base_url):
                problems.append(f"image {url} does not start with {image_base_url}")
        elif re.match(r"[a-z]+://", url) or Path(url).is_absolute() or not (Path(folder) / url).is_file():
            problems.append(f"image {url} is not a file beside the Markdown")
    if re.search(r"\$`|\\\(", outside_code):  # pandoc writes \[ for a literal bracket
        problems.append("math in delimiters LessWrong does not render (use $...$ and $$...$$)")
    return problems
