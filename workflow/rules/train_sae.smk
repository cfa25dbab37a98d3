rule train_base_sae:
    """Depth 1: an SAE on the cached activations (shared by both meta modes)."""
    conda:
        "../envs/metasae.yaml"
    input:
        manifest=rules.cache_acts.output.manifest,
    output:
        metrics=f"{R}/sae/{RUN}/depth1/metrics.json",
    params:
        spec=lambda w: as_json(config["sae"][w.sae]),
        common=device_flags(),
        acts=lambda w, input: str(Path(input.manifest).parent),
        out=lambda w, output: str(Path(output.metrics).parent),
    log:
        f"{R}/logs/sae/{RUN}/depth1.log",
    benchmark:
        f"{R}/benchmarks/sae/{RUN}/depth1.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
    shell:
        "metasae --threads {threads} train-sae --acts {params.acts} --spec {params.spec:q} --seed {wildcards.seed}"
        " {params.common} --out {params.out} > {log} 2>&1"


rule train_meta_sae:
    """Depth d >= 2: a meta-SAE on depth d-1 (its decoder rows or its activations, per mode)."""
    conda:
        "../envs/metasae.yaml"
    input:
        parent=parent_metrics,
    output:
        metrics=f"{R}/sae/{RUN}/{{mode}}/depth{{depth}}/metrics.json",
    wildcard_constraints:
        depth=r"[2-9]|[1-9]\d+",
    params:
        spec=lambda w: as_json(config["meta"]["modes"][w.mode]),
        stop=as_json(config["meta"].get("stop", {})),
        common=device_flags(),
        parent=lambda w, input: str(Path(input.parent).parent),
        out=lambda w, output: str(Path(output.metrics).parent),
    log:
        f"{R}/logs/sae/{RUN}/{{mode}}/depth{{depth}}.log",
    benchmark:
        f"{R}/benchmarks/sae/{RUN}/{{mode}}/depth{{depth}}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
    shell:
        "metasae --threads {threads} train-sae --parent {params.parent} --mode {wildcards.mode} --depth {wildcards.depth}"
        " --spec {params.spec:q} --stop {params.stop:q} --seed {wildcards.seed} {params.common}"
        " --out {params.out} > {log} 2>&1"
