rule cache_acts:
    """One layer's activations of a trained classifier over a probe dataset (no augmentation)."""
    conda:
        "../envs/metasae.yaml"
    input:
        model=rules.train_classifier.output.model,
    output:
        acts=f"{R}/acts/{{clf}}/seed{{seed}}/{{probe}}/{{layer}}/acts.safetensors",
        manifest=f"{R}/acts/{{clf}}/seed{{seed}}/{{probe}}/{{layer}}/manifest.json",
    params:
        dataset=lambda w: shlex.quote(config["probes"][w.probe]),
        common=common_flags(),
        model_dir=lambda w, input: str(Path(input.model).parent),
        out=lambda w, output: str(Path(output.manifest).parent),
    log:
        f"{R}/logs/cache_acts/{{clf}}/seed{{seed}}/{{probe}}/{{layer}}.log",
    benchmark:
        f"{R}/benchmarks/cache_acts/{{clf}}/seed{{seed}}/{{probe}}/{{layer}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "metasae --threads {threads} cache-acts --model-dir {params.model_dir} --dataset {params.dataset}"
        " --layer {wildcards.layer} --seed {wildcards.seed} {params.common} --out {params.out} > {log} 2>&1"
