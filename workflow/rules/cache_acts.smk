def cache_command(w, input, output, role):
    """The cache-acts command of one of a probe's two image sets (study.probe_ref: eval, study.fit_ref: fit)."""
    ref = (study.fit_ref if role == "fit" else study.probe_ref)(config, w.probe)
    shuffle = " --shuffle-labels" if study_names.probe_shuffled(config, w.probe) else ""
    return (
        f"cache-acts --model-dir {Path(input.model).parent} --dataset {shlex.quote(ref)} --layer {w.layer}"
        f" --role {role}{shuffle} --seed {w.seed} {common_flags()} --out {Path(output.manifest).parent}"
    )


rule cache_acts:
    """One layer's activations of a trained classifier over a probe's eval images (no augmentation): what
    every statistic of its stack is computed on; no SAE of the stack trains on them."""
    conda:
        "../envs/metasae.yaml"
    input:
        model=rules.train_classifier.output.model,
    output:
        acts=f"{R}/acts/{{clf}}/seed{{seed}}/{{probe}}/{{layer}}/acts.safetensors",
        manifest=f"{R}/acts/{{clf}}/seed{{seed}}/{{probe}}/{{layer}}/manifest.json",
    params:
        command=lambda w, input, output: cache_command(w, input, output, "eval"),
    log:
        f"{R}/logs/cache_acts/{{clf}}/seed{{seed}}/{{probe}}/{{layer}}.log",
    benchmark:
        f"{R}/benchmarks/cache_acts/{{clf}}/seed{{seed}}/{{probe}}/{{layer}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "metasae --threads {threads} {params.command} > {log} 2>&1"


rule cache_fit_acts:
    """The same layer over the probe's fit images: what its SAE stack trains on (disjoint from the eval set)."""
    conda:
        "../envs/metasae.yaml"
    input:
        model=rules.train_classifier.output.model,
    output:
        acts=f"{R}/fit_acts/{{clf}}/seed{{seed}}/{{probe}}/{{layer}}/acts.safetensors",
        manifest=f"{R}/fit_acts/{{clf}}/seed{{seed}}/{{probe}}/{{layer}}/manifest.json",
    params:
        command=lambda w, input, output: cache_command(w, input, output, "fit"),
    log:
        f"{R}/logs/cache_fit_acts/{{clf}}/seed{{seed}}/{{probe}}/{{layer}}.log",
    benchmark:
        f"{R}/benchmarks/cache_fit_acts/{{clf}}/seed{{seed}}/{{probe}}/{{layer}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "metasae --threads {threads} {params.command} > {log} 2>&1"
