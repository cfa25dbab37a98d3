ANALYSIS = config.get("analysis", {})
# figures: report (default) draws the per-depth figures the write-up embeds; all: every one; none: no figure.
ANALYSIS_FLAGS = flags(top_n=ANALYSIS.get("top_n", 10), figures=ANALYSIS.get("figures", "report"))
if not ANALYSIS.get("feature_viz", True):
    ANALYSIS_FLAGS += " --no-feature-viz"


def analyse_command(w, depth):
    """The analyse command of one depth."""
    return (
        f"analyse --depth-dir {shlex.quote(depth_folder(w, 'sae', depth))} {ANALYSIS_FLAGS} {common_flags()}"
        f" --out {shlex.quote(depth_folder(w, 'analysis', depth))}"
    )


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
        command=lambda w: analyse_command(w, 1),
    log:
        f"{R}/logs/analysis/{RUN}/depth1.log",
    benchmark:
        f"{R}/benchmarks/analysis/{RUN}/depth1.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    shell:
        "metasae --threads {threads} {params.command} > {log} 2>&1"


if META_DEPTHS:

    rule analyse_meta:
        """Per-latent tables and figures of depths 2..max_depth of one mode, one after another in one process."""
        conda:
            "../envs/metasae.yaml"
        input:
            sae=rules.train_meta_sae.output.metrics,
        output:
            summary=[f"{R}/analysis/{RUN}/{{mode}}/depth{d}/summary.json" for d in META_DEPTHS],
            latents=[f"{R}/analysis/{RUN}/{{mode}}/depth{d}/latents.parquet" for d in META_DEPTHS],
        params:
            chain=lambda w: chained(analyse_command(w, d) for d in META_DEPTHS),
        log:
            f"{R}/logs/analysis/{RUN}/{{mode}}.log",
        benchmark:
            f"{R}/benchmarks/analysis/{RUN}/{{mode}}.tsv"
        threads: 1
        resources:
            mem_mb=3000,
            runtime=30 * len(META_DEPTHS),
        shell:
            "metasae --threads {threads} {params.chain} > {log} 2>&1"
