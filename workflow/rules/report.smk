def compare_summary():
    """The study the report sets beside this one (`compare_with`): an input once its summary exists, so the
    report is rendered again when that study is (re)run; until then the report says it is absent."""
    other = config.get("compare_with")
    path = Path(other, "summary", "depths.csv") if other else None
    return [str(path)] if path and path.is_file() else []


rule report:
    """The write-up: report/index.qmd rendered from the summary (and analysis/ figures; probes/ for the link to the
    dSprites report) to HTML, PDF, Markdown."""
    conda:
        "../envs/metasae.yaml"
    input:
        summary=rules.aggregate.output,
        template="report/index.qmd",
        quarto="report/_quarto.yml",
        compare=lambda w: compare_summary(),
        dsprites=dsprites_targets(),  # the dSprites section reads probes/ and probes_summary/
        synth=synth_targets(),  # "Do the criteria find a known depth?" reads synth_summary/synth_*.csv
    output:
        html=report(f"{R}/report/index.html", category="Write-up"),
        pdf=f"{R}/report/index.pdf",
        md=f"{R}/report/index.md",
        provenance=f"{R}/report/provenance.json",
    params:
        results=lambda w, output: str(Path(output.html).parent.parent),
        out=lambda w, output: str(Path(output.html).parent),
        compare=lambda w: flags(compare=config.get("compare_with")),
    log:
        f"{R}/logs/report.log",
    benchmark:
        f"{R}/benchmarks/report.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "metasae report --results {params.results:q} --out {params.out:q} --template {input.template:q}"
        " {params.compare} > {log} 2>&1"


rule report_dsprites:
    """The dSprites branch's own write-up: report/dsprites.qmd rendered from probes/ and probes_summary/ (the
    main report links to it)."""
    conda:
        "../envs/metasae.yaml"
    input:
        dsprites=dsprites_targets(),
        template="report/dsprites.qmd",
        quarto="report/_quarto.yml",
    output:
        html=report(f"{R}/report_dsprites/index.html", category="Write-up"),
        pdf=f"{R}/report_dsprites/index.pdf",
        md=f"{R}/report_dsprites/index.md",
        provenance=f"{R}/report_dsprites/provenance.json",
    params:
        results=lambda w, output: str(Path(output.html).parent.parent),
        out=lambda w, output: str(Path(output.html).parent),
    log:
        f"{R}/logs/report_dsprites.log",
    benchmark:
        f"{R}/benchmarks/report_dsprites.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "metasae report --results {params.results:q} --out {params.out:q} --template {input.template:q}"
        " > {log} 2>&1"
