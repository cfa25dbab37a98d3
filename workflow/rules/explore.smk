rule explore:
    """The offline latent explorer over every analysed depth: index.html beside its scripts (explorer.js,
    data/: one per depth and probe dataset, loaded on demand); the folder is the stage's own."""
    conda:
        "../envs/metasae.yaml"
    input:
        summaries=all_analysis_summaries(),
    output:
        html=report(f"{R}/explorer/index.html", category="Explorer"),
    params:
        flags=flags(data_dir=config.get("data_dir")),
    log:
        f"{R}/logs/explore.log",
    benchmark:
        f"{R}/benchmarks/explore.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    shell:
        "metasae --threads {threads} explore --results {R:q} --out {output.html:q} {params.flags} > {log} 2>&1"
