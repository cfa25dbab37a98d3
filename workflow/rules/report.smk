rule report:
    """The write-up: report/index.qmd rendered from the summary (and analysis/probes figures) to HTML, PDF, Markdown."""
    conda:
        "../envs/metasae.yaml"
    input:
        summary=rules.aggregate.output,
        template="report/index.qmd",
        quarto="report/_quarto.yml",
    output:
        html=report(f"{R}/report/index.html", category="Write-up"),
        pdf=f"{R}/report/index.pdf",
        md=f"{R}/report/index.md",
        provenance=f"{R}/report/provenance.json",
    params:
        results=lambda w, output: str(Path(output.html).parent.parent),
        out=lambda w, output: str(Path(output.html).parent),
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
        " > {log} 2>&1"
