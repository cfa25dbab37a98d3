"""The write-up's shape (issue 19): the main text fits 12 PDF pages and 6 figures before the appendix, no text
leaves the page's text area, and the LessWrong Markdown (`--image-base-url`, `--format lesswrong`) pastes as
it is: absolute image URLs, no raw HTML, tables of at most 6 columns."""

from __future__ import annotations

import re

import pandas as pd
import pypdf
import pytest

from metasae.cli import main
from metasae.report_checks import (
    HTML_TAG,
    IMAGE,
    heading_page,
    markdown_problems,
    pdf_layout_problems,
    tables,
)
from metasae.stages.report import render_report
from metasae.writeup.format import md_table
from tests.test_report import make_results

APPENDIX = "Appendix: supporting tables and figures"
URL = "https://example.org/x"


def make_deep_results(root):
    """The report fixture stretched to depth 8 and a third probe dataset: tables that were 14 columns wide
    and pages of per-depth rows before the layout was fixed."""
    results = make_results(root)
    path = results / "summary" / "depths.csv"
    d = pd.read_csv(path)
    trained = d.loc[d["status"] == "trained"]
    deeper = [trained.loc[trained["depth"] == 3].assign(depth=k, stack_fvu=0.1 * k) for k in range(4, 9)]
    third = trained.assign(dataset="patches", dataset_ref="patches:train", is_real=False)
    pd.concat([d, *deeper, third], ignore_index=True).to_csv(path, index=False)
    return results


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    results = make_deep_results(tmp_path_factory.mktemp("results"))
    out = tmp_path_factory.mktemp("report")
    render_report(results, out, renderer="pandoc")
    return results, out


def test_main_text_fits_twelve_pages_and_six_figures(rendered):
    _, out = rendered
    pdf = out / "index.pdf"
    first = heading_page(pdf, APPENDIX)
    assert first is not None, "the appendix heading is missing from the PDF"
    assert first - 1 <= 12, f"main text runs to page {first - 1}"
    assert len(pypdf.PdfReader(pdf).pages) > first  # the appendix follows
    markdown = (out / "index.md").read_text()
    main_text = markdown.split(f"## {APPENDIX}")[0]
    figures = IMAGE.findall(main_text)
    assert 1 <= len(figures) <= 6, figures
    assert main_text.count("What to see") >= len(figures)  # each figure says what to look at
    assert main_text.index("## TL;DR") < main_text.index("| claim") < main_text.index("## Method")


def test_no_text_leaves_the_page_or_overlaps_the_footer(rendered):
    _, out = rendered
    assert pdf_layout_problems(out / "index.pdf") == []


def test_every_table_is_at_most_six_columns(rendered):
    _, out = rendered
    headers = tables((out / "index.md").read_text())
    assert headers and max(map(len, headers)) <= 6


def test_the_layout_check_fails_on_the_old_layout(tmp_path):
    """A 14-column table and a table taller than a page, wrapped in a non-breakable figure as pandoc's Typst
    writer does: the check must see text past the right margin and rows over the footer."""
    wide = pd.DataFrame([[f"{1000 * i + j:.4f} ± 0.0012" for j in range(14)] for i in range(3)])
    wide.columns = [f"column number {j}" for j in range(14)]
    tall = pd.DataFrame({"row": range(90), "value": range(90)})
    body = md_table(wide, "Wide.", max_columns=99) + "\n" + md_table(tall, "Tall.")
    template = tmp_path / "old.qmd"
    margins = "margin:\n  x: 2cm\n  y: 2.2cm\n"  # the report's (report_checks.MARGIN_X, MARGIN_Y)
    template.write_text(f"---\ntitle: old layout\n{margins}---\n\n## TL;DR\n\n{body}\n")
    (tmp_path / "results").mkdir()
    out = tmp_path / "out"
    with pytest.raises(Exception, match="not ready for LessWrong: a table of 14 columns"):
        render_report(tmp_path / "results", out, template=template, renderer="pandoc")
    # the PDF itself, rendered without the Markdown check
    import pypandoc
    import typst

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "s.md").write_text(template.read_text())
    pypandoc.convert_file(
        str(tmp_path / "b" / "s.md"),
        "typst",
        format="markdown",
        outputfile=str(tmp_path / "b" / "s.typ"),
        extra_args=["-s"],
    )
    (tmp_path / "old.pdf").write_bytes(typst.compile(str(tmp_path / "b" / "s.typ")))
    problems = pdf_layout_problems(tmp_path / "old.pdf")
    assert any("past the right margin" in p for p in problems), problems
    assert any("in the footer" in p for p in problems), problems


def test_lesswrong_bundle_with_image_base_url(tmp_path):
    results = make_results(tmp_path / "results")
    out = tmp_path / "lw"
    args = ["report", "--results", str(results), "--out", str(out), "--renderer", "pandoc"]
    assert main([*args, "--format", "lesswrong", "--image-base-url", URL]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["figures", "post.md", "provenance.json"]
    text = (out / "post.md").read_text()
    images = IMAGE.findall(text)
    assert images and all(u.startswith(f"{URL}/figures/") for u in images), images
    assert all((out / u.removeprefix(f"{URL}/")).is_file() for u in images)  # upload figures/ to URL
    assert not HTML_TAG.search(text)
    assert max(map(len, tables(text))) <= 6
    assert "$\\mathrm{FVU}" in text and "$`" not in text  # math as LessWrong reads it
    assert markdown_problems(text, out, URL) == []
    # the main text only, its relative links resolved against the URL: the full report, the explorer
    assert "## Appendix" not in text and f"[full report]({URL}/index.html)" in text
    assert (
        "(https://example.org/explorer/index.html#run=mlp/seed0/mnist/fc1/topk&mode=decoder&depth=1" in text
    )


def test_summary_figure_has_one_legend_and_one_colour_per_line(tmp_path):
    """Every panel draws each dataset in the same colour, one legend serves the figure, and a mode with a
    single depth of values gets no panel (no single-point axis)."""
    import matplotlib.pyplot as plt

    from metasae.figures.summary import draw_metric_vs_depth

    d = pd.read_csv(make_results(tmp_path) / "summary" / "depths.csv")
    both = draw_metric_vs_depth(d, "fvu", "FVU")
    colours = [
        {
            line.get_label(): line.get_color()
            for line in ax.get_lines()
            if not line.get_label().startswith("_")
        }
        for ax in both.axes
    ]
    assert len(both.axes) == 2 and colours[0] == colours[1] and len(set(colours[0].values())) == 2
    assert len(both.legends) == 1 and all(ax.get_legend() is None for ax in both.axes)
    assert [t.get_text() for t in both.legends[0].get_texts()] == ["glyphs (mlp)", "mnist (mlp)"]
    plt.close(both)
    d.loc[(d["mode"] == "decoder") & (d["depth"] > 1), "purity_mean"] = float("nan")  # dense: blanked
    one = draw_metric_vs_depth(d, "purity_mean", "purity")
    assert [ax.get_title() for ax in one.axes] == ["activations mode"]
    plt.close(one)
    assert draw_metric_vs_depth(d.assign(purity_mean=float("nan")), "purity_mean", "purity") is None


def test_markdown_checks_name_each_problem(tmp_path):
    text = (
        "<div>x</div>\n\n| a | b | c | d | e | f | g |\n|---|---|---|---|---|---|---|\n"
        "| 1 | 2 | 3 | 4 | 5 | 6 | 7 |\n\n![cap](figures/missing.png)\n\n$`x`$\n"
    )
    problems = markdown_problems(text, tmp_path)
    assert len(problems) == 4, problems
    assert re.search("raw HTML", problems[0]) and "7 columns" in problems[1]
    assert "not a file" in problems[2] and "math" in problems[3]
    assert "does not start with" in markdown_problems("![c](figures/a.png)\n", tmp_path, URL)[0]


def test_md_table_splits_wide_tables_repeating_the_row_labels():
    df = pd.DataFrame(
        [[f"r{i}", *range(13)] for i in range(2)], columns=["row", *[f"d{k}" for k in range(13)]]
    )
    text = md_table(df, "Wide.")
    headers = tables(text)
    assert len(headers) == 3 and all(len(h) <= 6 and h[0] == "row" for h in headers)
    assert [c for h in headers for c in h[1:]] == [f"d{k}" for k in range(13)]
    assert "Wide. (part 1 of 3)" in text and "Continued (part 3 of 3)." in text


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Right-aligned (number) cells whose text runs over more than one line, in the report's own column.
WRAPPED = """
return Array.from(document.querySelectorAll('td[style*="right"]')).filter(td => {
  const range = document.createRange(); range.selectNodeContents(td);
  const tops = new Set(Array.from(range.getClientRects()).map(r => Math.round(r.top)));
  return tops.size > 1;
}).map(td => td.textContent);
"""


def test_html_tables_wrap_no_number(rendered, tmp_path):
    """In a headless browser at a laptop's width, no number cell of any table breaks over two lines."""
    _, out = rendered
    driver = _chromium(tmp_path)
    try:
        driver.get((out / "index.html").as_uri())
        assert driver.execute_script("return document.querySelectorAll('td').length") > 0
        assert driver.execute_script(WRAPPED) == []
    finally:
        driver.quit()


STYLE = """
const css = (el, prop, pseudo) => getComputedStyle(el, pseudo || null).getPropertyValue(prop);
const body = document.body, h2 = document.querySelector('h2');
return {
  body_font: css(body, 'font-family'), h2_font: css(h2, 'font-family'),
  column_em: parseFloat(css(body, 'max-width')) / parseFloat(css(body, 'font-size')),
  figure: css(document.querySelector('figcaption'), 'content', '::before'),
  table: css(document.querySelector('caption'), 'content', '::before'),
  toc: document.querySelectorAll('nav.toc a').length,
  images: Array.from(document.images).every(i => i.complete && i.naturalWidth > 0),
};
"""


def _chromium(tmp_path):
    """A headless Chromium driven by Selenium (skipped where either is missing)."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver")
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def test_html_reads_as_a_post(rendered, tmp_path):
    """The styled page: a serif body in a column of about 40em, sans-serif headings, numbered figure and
    table captions, a table of contents, and every image embedded and drawn."""
    _, out = rendered
    driver = _chromium(tmp_path)
    try:
        driver.get((out / "index.html").as_uri())
        style = driver.execute_script(STYLE)
    finally:
        driver.quit()
    assert "serif" in style["body_font"] and "Georgia" in style["body_font"]
    assert "sans-serif" in style["h2_font"] and "Georgia" not in style["h2_font"]
    assert 38 <= style["column_em"] <= 42
    assert style["figure"].startswith('"Figure "') and style["table"].startswith('"Table "')
    assert style["toc"] >= 8 and style["images"]
