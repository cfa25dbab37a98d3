"""`metasae report`: render report/index.qmd to self-contained HTML, a PDF and LessWrong-ready Markdown.

The .qmd's Python cells are executed here first, turning them into plain Markdown, so Quarto (when
installed) and the offline fallback (pandoc from `pypandoc-binary`, Typst from the `typst` wheel)
render exactly the same content. Nothing may reach the network: a pandoc "Could not fetch" warning
means the HTML would not open offline, so it fails the render instead of passing silently.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urljoin

from metasae.errors import MetasaeError
from metasae.io import provenance, sha256_file, staged_dir, write_json
from metasae.writeup.data import ReportData

REPORT_DIR = Path(__file__).resolve().parents[1] / "report"  # package data: the sources and the page style
DEFAULT_TEMPLATE = REPORT_DIR / "index.qmd"
DSPRITES_TEMPLATE = REPORT_DIR / "dsprites.qmd"  # the dSprites branch's own report (results/report_dsprites/)
PAGE = ("post.html", "post.css")  # pandoc's HTML template and style sheet: the HTML reads as a post
# Where the appendix starts in the .qmd: the Markdown outputs (the LessWrong post) stop there and link to
# the full report instead.
APPENDIX = "::: {.appendix}"
FULL_REPORT = (
    "\n*This post is the main text of a longer report: the appendix, with every table per configuration, "
    "the definitions and the remaining figures, is in the [full report](index.html) ([PDF](index.pdf)).*\n"
)
RENDERERS = ("auto", "quarto", "pandoc")
OUTPUTS = ("index.html", "index.pdf", "index.md")
FORMATS = {"all": OUTPUTS, "lesswrong": ("post.md",)}  # --format: the files each writes (plus figures/)
PROVENANCE_FILE = "provenance.json"  # written last
GFM = "gfm-raw_html-tex_math_gfm+tex_math_dollars"  # LessWrong reads $...$ math, not GitHub's $`...`$
_CELL = re.compile(r"^```\{python\}[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def _cell_options(code: str) -> dict[str, str]:
    """Quarto's `#| key: value` cell options."""
    pairs = (line[2:].split(":", 1) for line in code.splitlines() if line.startswith("#|") and ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def execute_cells(source: str, params: dict[str, object], origin: str) -> tuple[str, dict]:
    """Run the Python cells in order in one namespace; each cell is replaced by what it prints.

    A cell tagged `parameters` is followed by `params` (as papermill and `quarto -P` do). Printed
    output must be Markdown (`#| output: asis`): anything else would render differently in Quarto.
    """
    namespace: dict = {}
    pieces, pos = [], 0
    for i, match in enumerate(_CELL.finditer(source), start=1):
        code = match.group(1)
        options = _cell_options(code)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"{origin}, cell {i}", "exec", dont_inherit=True), namespace)
        if "parameters" in options.get("tags", ""):
            namespace.update(params)
        if printed.getvalue() and options.get("output") != "asis":
            raise MetasaeError(f"{origin}: cell {i} prints output but lacks '#| output: asis'")
        pieces += [source[pos : match.start()], printed.getvalue()]
        pos = match.end()
    pieces.append(source[pos:])
    return "".join(pieces), namespace


def _run(cmd: list[str], cwd: Path) -> None:
    """Run a renderer; its failure or any unfetchable resource is a one-line MetasaeError."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    lines = proc.stderr.splitlines()
    fetch = [line for line in lines if "Could not fetch" in line]
    if fetch:
        raise MetasaeError(f"{Path(cmd[0]).name}: output would not be self-contained: {fetch[0].strip()}")
    if proc.returncode != 0:
        raise MetasaeError(
            f"{Path(cmd[0]).name} failed ({proc.returncode}): {lines[-1] if lines else 'no message'}"
        )


def main_text(markdown: str) -> str:
    """The document up to its appendix (all of it where it has none), then the link to the full report
    where an appendix was cut: what the Markdown outputs carry."""
    head, cut, _ = markdown.partition(APPENDIX)
    return head.rstrip() + "\n" + (FULL_REPORT if cut else "")


def _render_pandoc(build: Path, outputs: tuple[str, ...]) -> None:
    import pypandoc

    pandoc = pypandoc.get_pandoc_path()
    if "index.html" in outputs:
        for name in PAGE:
            shutil.copyfile(REPORT_DIR / name, build / name)
        page = ["--template", PAGE[0], "--css", PAGE[1], "--toc", "--toc-depth=2"]
        html = ["-t", "html5", "-s", *page, "--embed-resources", "--mathml", "-o", "index.html"]
        _run([pandoc, "source.md", "-f", "markdown", *html], build)
    for name in outputs:
        if name.endswith(".md"):
            _run([pandoc, "main.md", "-f", "markdown", "-t", GFM, "--wrap=none", "-o", name], build)
    if "index.pdf" in outputs:
        _render_typst(build, pandoc)


def _render_typst(build: Path, pandoc: str) -> None:
    import typst

    _run([pandoc, "source.md", "-f", "markdown", "-t", "typst", "-s", "-o", "index.typ"], build)
    try:  # embedded fonts only, so the PDF looks the same on every machine
        pdf = typst.compile(str(build / "index.typ"), root=str(build), ignore_system_fonts=True)
    except typst.TypstError as exc:
        raise MetasaeError(f"typst failed on the report: {str(exc).splitlines()[0]}") from None
    (build / "index.pdf").write_bytes(pdf)


def _render_quarto(build: Path, outputs: tuple[str, ...]) -> None:
    for name in ("_quarto.yml", PAGE[1]):
        shutil.copyfile(REPORT_DIR / name, build / name)
    for fmt, source, name in (
        ("html", "source.md", "index.html"),
        ("typst", "source.md", "index.pdf"),
        ("gfm", "main.md", "index.md"),
        ("gfm", "main.md", "post.md"),
    ):
        if name in outputs:
            _run(["quarto", "render", source, "--to", fmt, "--output", name], build)


_IMAGE_LINE = re.compile(r"^!\[(?P<caption>[^\]]*)\]\((?P<src>[^)\s]+)\)[ \t]*$", re.M)
_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]\n]*)\]\((?P<href>[^)\s]+)\)")


def lesswrong_markdown(markdown: str, image_base_url: str | None = None) -> str:
    """The Markdown as LessWrong imports it: each image at `image_base_url`/<its path beside the Markdown>,
    and each relative link (the full report, the explorer) resolved against it, where given, since relative
    paths break when the text is pasted (pandoc already writes each figure's caption as a paragraph under
    it: an image's alt text is not shown)."""
    if not image_base_url:
        return markdown
    base = image_base_url.rstrip("/") + "/"

    def absolute(url: str) -> str:
        return url if re.match(r"[a-z]+://|#|mailto:", url) else urljoin(base, url)

    def figure(match: re.Match) -> str:
        return f"![{match['caption']}]({absolute(match['src'])})"

    def link(match: re.Match) -> str:
        return f"[{match['text']}]({absolute(match['href'])})"

    return _LINK.sub(link, _IMAGE_LINE.sub(figure, markdown))


def _finish_markdown(path: Path, image_base_url: str | None) -> None:
    """Captions and image URLs (lesswrong_markdown), then the LessWrong checks: a problem fails the render."""
    from metasae.report_checks import markdown_problems

    text = lesswrong_markdown(path.read_text(), image_base_url)
    problems = markdown_problems(text, path.parent, image_base_url)
    if problems:
        raise MetasaeError(f"{path.name} is not ready for LessWrong: {'; '.join(problems[:3])}")
    path.write_text(text)


def _input_name(path: Path, results: Path) -> str:
    """An input's name in provenance.json: relative to the results folder, or absolute (`--compare`'s)."""
    return path.relative_to(results).as_posix() if path.is_relative_to(results) else path.as_posix()


def render_report(
    results: str | Path,
    out: str | Path,
    template: str | Path = DEFAULT_TEMPLATE,
    renderer: str = "auto",
    compare: str | Path | None = None,
    output_format: str = "all",
    image_base_url: str | None = None,
) -> dict[str, Path]:
    """Render `template` against `results` into `out` (index.html, index.pdf, index.md, figures/; with
    `output_format` "lesswrong", only post.md and figures/: a bundle to upload to LessWrong);
    `compare`: a second study's results folder the log comparison sets beside this one; `image_base_url`:
    where the figures will be hosted (the Markdown's images then point at `image_base_url`/figures/...)."""
    results, out, template = Path(results), Path(out), Path(template)
    if renderer not in RENDERERS:
        raise MetasaeError(f"--renderer {renderer!r}: allowed values are {', '.join(RENDERERS)}")
    if output_format not in FORMATS:
        raise MetasaeError(f"--format {output_format!r}: allowed values are {', '.join(FORMATS)}")
    if image_base_url is not None and not re.match(r"https?://[^\s()<>]+$", image_base_url):
        raise MetasaeError(f"--image-base-url {image_base_url!r}: expected an http(s) URL")
    outputs = FORMATS[output_format]
    if not template.is_file():
        raise MetasaeError(f"{template}: report template not found")
    if not results.is_dir():
        raise MetasaeError(f"{results}: results folder not found")
    if renderer == "auto":
        renderer = "quarto" if shutil.which("quarto") else "pandoc"
    with staged_dir(out, PROVENANCE_FILE) as staged:  # all outputs or none; a killed render leaves nothing
        build = staged / ".render"
        build.mkdir()
        params = {
            "results": str(results.resolve()),
            "figures": str(build / "figures"),
            "compare": str(Path(compare).resolve()) if compare else None,
        }
        markdown, namespace = execute_cells(template.read_text(), params, str(template))
        (build / "source.md").write_text(markdown)
        (build / "main.md").write_text(main_text(markdown))
        if renderer == "quarto":
            _render_quarto(build, outputs)
        else:
            _render_pandoc(build, outputs)
        for name in outputs:
            if name.endswith(".md"):
                _finish_markdown(build / name, image_base_url)
        if (build / "figures").is_dir():
            shutil.copytree(build / "figures", staged / "figures")
        for name in outputs:
            shutil.copyfile(build / name, staged / name)
        shutil.rmtree(build)
        inputs = sorted({p for v in namespace.values() if isinstance(v, ReportData) for p in v.inputs})
        config = {
            "results": str(results),
            "template": str(template),
            "template_sha256": sha256_file(template),
            "renderer": renderer,
            "compare": str(compare) if compare else None,
            "format": output_format,
            "image_base_url": image_base_url,
            "inputs": {_input_name(p, results.resolve()): sha256_file(p) for p in inputs},
        }
        write_json(staged / PROVENANCE_FILE, provenance(config=config))
    return {name: out / name for name in outputs}
