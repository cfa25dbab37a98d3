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

from metasae.errors import MetasaeError
from metasae.io import provenance, sha256_file, staged_dir, write_json
from metasae.report_content import ReportData

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[1] / "report" / "index.qmd"
RENDERERS = ("auto", "quarto", "pandoc")
OUTPUTS = ("index.html", "index.pdf", "index.md")
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


def _render_pandoc(build: Path) -> None:
    import pypandoc
    import typst

    pandoc = pypandoc.get_pandoc_path()
    _run(
        [
            pandoc,
            "source.md",
            "-f",
            "markdown",
            "-t",
            "html5",
            "-s",
            "--embed-resources",
            "--mathml",
            "-o",
            "index.html",
        ],
        build,
    )
    _run([pandoc, "source.md", "-f", "markdown", "-t", GFM, "--wrap=none", "-o", "index.md"], build)
    _run([pandoc, "source.md", "-f", "markdown", "-t", "typst", "-s", "-o", "index.typ"], build)
    try:  # embedded fonts only, so the PDF looks the same on every machine
        pdf = typst.compile(str(build / "index.typ"), root=str(build), ignore_system_fonts=True)
    except typst.TypstError as exc:
        raise MetasaeError(f"typst failed on the report: {str(exc).splitlines()[0]}") from None
    (build / "index.pdf").write_bytes(pdf)


def _render_quarto(build: Path, project: Path) -> None:
    shutil.copyfile(project / "_quarto.yml", build / "_quarto.yml")
    for fmt, name in (("html", "index.html"), ("typst", "index.pdf"), ("gfm", "index.md")):
        _run(["quarto", "render", "source.md", "--to", fmt, "--output", name], build)


def _input_name(path: Path, results: Path) -> str:
    """An input's name in provenance.json: relative to the results folder, or absolute (`--compare`'s)."""
    return path.relative_to(results).as_posix() if path.is_relative_to(results) else path.as_posix()


def render_report(
    results: str | Path,
    out: str | Path,
    template: str | Path = DEFAULT_TEMPLATE,
    renderer: str = "auto",
    compare: str | Path | None = None,
) -> dict[str, Path]:
    """Render `template` against `results` into `out` (index.html, index.pdf, index.md, figures/);
    `compare`: a second study's results folder the log comparison sets beside this one."""
    results, out, template = Path(results), Path(out), Path(template)
    if renderer not in RENDERERS:
        raise MetasaeError(f"--renderer {renderer!r}: allowed values are {', '.join(RENDERERS)}")
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
        if renderer == "quarto":
            _render_quarto(build, template.parent)
        else:
            _render_pandoc(build)
        if (build / "figures").is_dir():
            shutil.copytree(build / "figures", staged / "figures")
        for name in OUTPUTS:
            shutil.copyfile(build / name, staged / name)
        shutil.rmtree(build)
        inputs = sorted({p for v in namespace.values() if isinstance(v, ReportData) for p in v.inputs})
        config = {
            "results": str(results),
            "template": str(template),
            "template_sha256": sha256_file(template),
            "renderer": renderer,
            "compare": str(compare) if compare else None,
            "inputs": {_input_name(p, results.resolve()): sha256_file(p) for p in inputs},
        }
        write_json(staged / PROVENANCE_FILE, provenance(config=config))
    return {name: out / name for name in OUTPUTS}
