"""The dSprites branch: a small ViT per run (active only when the config has a `dsprites:` section)."""

wildcard_constraints:
    vit_run="[a-z0-9_]+",


rule train_vit:
    """Train the ViT of one dSprites run (glyphs: the log's design; dsprites_gen shape: in-distribution)."""
    conda:
        "../envs/metasae.yaml"
    output:
        metrics=f"{R}/vit/{{vit_run}}/metrics.json",
    params:
        flags=lambda w: flags(**{**DSP.get("train", {}), **DSP["runs"][w.vit_run]},  # a run may override
                              vit=as_json(DSP.get("vit", {})), seed=DSP.get("seed", 0)),
        common=common_flags(),
        out=lambda w, output: str(Path(output.metrics).parent),
    log:
        f"{R}/logs/train_vit/{{vit_run}}.log",
    benchmark:
        f"{R}/benchmarks/train_vit/{{vit_run}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "metasae --threads {threads} train-vit {params.flags} {params.common} --out {params.out} > {log} 2>&1"
