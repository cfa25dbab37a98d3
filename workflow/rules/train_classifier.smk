rule train_classifier:
    """Train a base classifier per seed (the log's MLP or the small CNN)."""
    conda:
        "../envs/metasae.yaml"
    input:
        data_check=rules.check_data.output,
    output:
        model=f"{R}/models/{{clf}}/seed{{seed}}/model.safetensors",
        cfg=f"{R}/models/{{clf}}/seed{{seed}}/cfg.json",
        metrics=f"{R}/models/{{clf}}/seed{{seed}}/metrics.json",
    params:
        flags=lambda w: flags(**study_names.classifier_args(config, w.clf)),
        common=common_flags(),
        out=lambda w, output: str(Path(output.model).parent),
    log:
        f"{R}/logs/train_classifier/{{clf}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train_classifier/{{clf}}/seed{{seed}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "metasae --threads {threads} train-classifier {params.flags} --seed {wildcards.seed} {params.common}"
        " --out {params.out} > {log} 2>&1"
