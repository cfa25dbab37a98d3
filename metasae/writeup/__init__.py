"""The write-up's content, computed from a results folder as plain Markdown.

`report/index.qmd` calls the section functions of `sections/` from `output: asis` cells with one
`data.ReportData`, so every number, table and figure in the document comes from `results/` and nothing
the run computes is typed by hand. A section whose inputs are absent says so in one sentence instead of
failing: a partial study still gets a report that is honest about what it covers.
"""
