ANALYSIS_FLAGS = flags(top_n=config.get("analysis", {}).get("top_n", 10))
if not config.get("analysis", {}).get("feature_viz", True):
    ANALYSIS_FLAGS += " --no-feature-viz"


rule analyse_base:
    """Per-latent tables and figures of depth 1."""
    conda:
        "../envs/metasae.yaml"
    input:
        sae=rules.train_base_sae.output.metrics,
    output:
        summary=f"{R}/analysis/{RUN}/depth1/summary.json",
        latents=f"{R}/analysis/{RUN}/depth1/latents.parquet",
    params:
        sae=lambda w, input: str(Path(input.sae).parent),
        out=lambda w, output: str(Path(output.summary).parent),
        flags=ANALYSIS_FLAGS,
        common=common_flags(),
    log:
        f"{R}/logs/analysis/{RUN}/depth1.log",
    benchmark:
        f"{R}/benchmarks/analysis/{RUN}/depth1.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    shell:
        "metasae --threads {threads} analyse --depth-dir {params.sae} {params.flags} {params.common}"
        " --out {params.out} > {log} 2>&1"


use rule analyse_base as analyse_meta with:
    input:
        sae=rules.train_meta_sae.output.metrics,
    output:
        summary=f"{R}/analysis/{RUN}/{{mode}}/depth{{depth}}/summary.json",
        latents=f"{R}/analysis/{RUN}/{{mode}}/depth{{depth}}/latents.parquet",
    log:
        f"{R}/logs/analysis/{RUN}/{{mode}}/depth{{depth}}.log",
    benchmark:
        f"{R}/benchmarks/analysis/{RUN}/{{mode}}/depth{{depth}}.tsv"
