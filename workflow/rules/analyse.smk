ANALYSIS = config.get("analysis", {})
# figures: report (default) draws the per-depth figures the write-up embeds; all: every one; none: no figure.
ANALYSIS_FLAGS = flags(top_n=ANALYSIS.get("top_n", 10), figures=ANALYSIS.get("figures", "report"))
if not ANALYSIS.get("feature_viz", True):
    ANALYSIS_FLAGS += " --no-feature-viz"
# the meta gain's nulls, computed once per study for the stacks of one classifier on its several probes
ANALYSIS_FLAGS += f" --null-memo {shlex.quote(f'{R}/memo/meta_null')}"


def analyse_command(w, folder):
    """The analyse command of one depth (a STACK_FOLDERS entry)."""
    return (
        f"analyse --depth-dir {shlex.quote(depth_folder(w, 'sae', folder))} {ANALYSIS_FLAGS} {common_flags()}"
        f" --out {shlex.quote(depth_folder(w, 'analysis', folder))}"
    )


rule analyse_stack:
    """Per-latent tables and figures of every depth of a run's stack, one after another in one process."""
    conda:
        "../envs/metasae.yaml"
    wildcard_constraints:
        sae=study_names.STACK_SAE_REGEX,
    input:
        sae=rules.train_stack.output.metrics,
    output:
        summary=[f"{R}/analysis/{RUN}/{folder}/summary.json" for folder in STACK_FOLDERS],
        latents=[f"{R}/analysis/{RUN}/{folder}/latents.parquet" for folder in STACK_FOLDERS],
    params:
        chain=lambda w: chained(analyse_command(w, folder) for folder in STACK_FOLDERS),
    log:
        f"{R}/logs/analysis/{RUN}/stack.log",
    benchmark:
        f"{R}/benchmarks/analysis/{RUN}/stack.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30 * len(STACK_FOLDERS),
    shell:
        "metasae --threads {threads} {params.chain} > {log} 2>&1"


rule analyse_control:
    """Per-latent tables and figures of a width-matched control (depth 1 alone)."""
    conda:
        "../envs/metasae.yaml"
    wildcard_constraints:
        sae=study_names.CONTROL_SAE_REGEX,
    input:
        sae=rules.train_control_sae.output.metrics,
    output:
        summary=f"{R}/analysis/{RUN}/depth1/summary.json",
        latents=f"{R}/analysis/{RUN}/depth1/latents.parquet",
    params:
        command=lambda w: analyse_command(w, "depth1"),
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
