rule aggregate:
    """Study-level tables (depths.csv, optimal_depth.csv, claims.csv, meta_structure.json) and metric-vs-depth
    figures."""
    conda:
        "../envs/metasae.yaml"
    input:
        summaries=all_analysis_summaries(),
        classifiers=[f"{R}/models/{run.classifier}/seed{run.seed}/metrics.json" for run in RUNS],
    output:
        depths=report(f"{R}/summary/depths.csv", category="Summary"),
        optimal=report(f"{R}/summary/optimal_depth.csv", category="Summary"),
        claims=report(f"{R}/summary/claims.csv", category="Summary"),
        study=f"{R}/summary/study.json",
        meta_structure=f"{R}/summary/meta_structure.json",
        figures=report(
            directory(f"{R}/summary/figures"),
            patterns=["{name}.png"],
            category="Figures vs depth",
        ),
    params:
        out=lambda w, output: str(Path(output.depths).parent),
        config=as_json(study_config()),
    log:
        f"{R}/logs/aggregate.log",
    benchmark:
        f"{R}/benchmarks/aggregate.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "metasae --threads {threads} aggregate --config-json {params.config:q} --out {params.out} {input.summaries:q}"
        " > {log} 2>&1"
