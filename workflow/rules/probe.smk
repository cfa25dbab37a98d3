"""The dSprites branch's probes: every factor at every ViT checkpoint x layer, then an SAE on the best layer
with k-sparse probing; then every run side by side (probe_summary)."""


rule probe_vit:
    """Linear and MLP probes of every dSprites factor at every checkpoint x layer, with the controls."""
    conda:
        "../envs/metasae.yaml"
    input:
        vit=rules.train_vit.output.metrics,
    output:
        csv=f"{R}/probes/{{vit_run}}/probes.csv",
        record=f"{R}/probes/{{vit_run}}/probes.json",
    params:
        flags=lambda w: flags(dataset=DSP["probe_set"], spec=as_json(DSP.get("probes", {})),
                              seed=DSP.get("seed", 0)),
        common=common_flags(),
        vit=lambda w, input: str(Path(input.vit).parent),
        out=lambda w, output: str(Path(output.csv).parent),
    log:
        f"{R}/logs/probe_vit/{{vit_run}}.log",
    benchmark:
        f"{R}/benchmarks/probe_vit/{{vit_run}}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    shell:
        "metasae --threads {threads} probe --vit-dir {params.vit} {params.flags} {params.common} --out {params.out}"
        " > {log} 2>&1"


rule probe_sae:
    """An SAE on the best probed layer; how many of its latents each factor needs (k-sparse probing)."""
    conda:
        "../envs/metasae.yaml"
    input:
        vit=rules.train_vit.output.metrics,
        probes=rules.probe_vit.output.csv,
    output:
        csv=f"{R}/probes/{{vit_run}}/ksparse.csv",
        record=f"{R}/probes/{{vit_run}}/ksparse.json",
    params:
        flags=lambda w: flags(dataset=DSP["probe_set"], spec=as_json(DSP["sae"]),
                              ks=DSP.get("ks"), seed=DSP.get("seed", 0)),
        common=common_flags(),
        vit=lambda w, input: str(Path(input.vit).parent),
        out=lambda w, output: str(Path(output.csv).parent),
    log:
        f"{R}/logs/probe_sae/{{vit_run}}.log",
    benchmark:
        f"{R}/benchmarks/probe_sae/{{vit_run}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "metasae --threads {threads} probe-sae --vit-dir {params.vit} --probes-csv {input.probes} {params.flags}"
        " {params.common} --out {params.out} > {log} 2>&1"


rule probe_summary:
    """Every run's probes side by side: one table and one figure per question (layer, step, orientation)."""
    conda:
        "../envs/metasae.yaml"
    input:
        csvs=[f"{R}/probes/{run}/probes.csv" for run in DSP.get("runs", {})],
    output:
        csv=f"{R}/probes_summary/probes.csv",
        summary=f"{R}/probes_summary/summary.json",
    params:
        out=lambda w, output: str(Path(output.csv).parent),
    log:
        f"{R}/logs/probe_summary.log",
    benchmark:
        f"{R}/benchmarks/probe_summary.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "metasae --threads {threads} probe-summary {input.csvs:q} --out {params.out} > {log} 2>&1"
