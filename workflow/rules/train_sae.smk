def stack_source(w, folder):
    """The same depth of the stack this run is encoded through instead of training (its classifier's
    `stack_from` probe), as a one-item list; empty where the run trains its own stack."""
    source = study.stack_source(config, study.Run(w.clf, int(w.seed), w.probe, w.layer, w.sae))
    return [f"{R}/sae/{source.path}/{folder.format(**dict(w.items()))}/metrics.json"] if source else []


def apply_flag(w, folder):
    return flags(apply=[str(Path(p).parent) for p in stack_source(w, folder)] or None)


def fit_cache(w):
    """The fit cache a run's depth 1 trains on, as a one-item list; empty for a planted tree (its one cache is
    both) and for an applied stack (it trains nothing)."""
    if w.clf == study.SYNTH or stack_source(w, "depth1"):
        return []
    return [f"{R}/fit_acts/{w.clf}/seed{w.seed}/{w.probe}/{w.layer}/manifest.json"]


def base_acts_flags(w, input):
    """--acts: the cache depth 1 trains on (or encodes, applied); --eval-acts: the probe's eval cache."""
    eval_dir = str(Path(input.manifest).parent)
    if not input.fit:
        return flags(acts=eval_dir)
    return flags(acts=str(Path(input.fit[0]).parent), eval_acts=eval_dir)


def sae_seed_flag(w):
    return flags(sae_seed=study.parse_run_sae(w.sae).sae_seed)


rule train_base_sae:
    """Depth 1: an SAE on the probe's fit activations with codes of its eval images (shared by both meta
    modes), or the stack_from probe's; a width-matched control (`<sae>__w<width>`) is trained the same way."""
    conda:
        "../envs/metasae.yaml"
    input:
        manifest=rules.cache_acts.output.manifest,
        fit=fit_cache,
        source=lambda w: stack_source(w, "depth1"),
    output:
        metrics=f"{R}/sae/{RUN}/depth1/metrics.json",
    params:
        apply=lambda w: apply_flag(w, "depth1"),
        spec=lambda w: as_json(study_names.run_spec(config, w.sae)),
        common=device_flags(),
        acts=base_acts_flags,
        sae_seed=sae_seed_flag,
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
        "metasae --threads {threads} train-sae {params.acts} --spec {params.spec:q} --seed {wildcards.seed}"
        " {params.sae_seed} {params.apply} {params.common} --out {params.out} > {log} 2>&1"


def train_meta_command(w, depth):
    """The train-sae command of one depth >= 2 of a chain."""
    return "train-sae " + " ".join(
        [
            flags(
                parent=depth_folder(w, "sae", depth - 1),
                mode=w.mode,
                depth=depth,
                spec=as_json(config["meta"]["modes"][w.mode]),
                stop=as_json(config["meta"].get("stop", {})),
                seed=w.seed,
            ),
            sae_seed_flag(w),
            apply_flag(w, f"{{mode}}/depth{depth}"),
            device_flags(),
            flags(out=depth_folder(w, "sae", depth)),
        ]
    )


if META_DEPTHS:

    rule train_meta_sae:
        """Depths 2..max_depth of one mode, one after another in one process: each a meta-SAE on the depth
        before it (its decoder rows or its activations, per mode), or the stack_from probe's."""
        conda:
            "../envs/metasae.yaml"
        input:
            parent=rules.train_base_sae.output.metrics,
            source=lambda w: [p for d in META_DEPTHS for p in stack_source(w, f"{{mode}}/depth{d}")],
        output:
            metrics=[f"{R}/sae/{RUN}/{{mode}}/depth{d}/metrics.json" for d in META_DEPTHS],
        params:
            chain=lambda w: chained(train_meta_command(w, d) for d in META_DEPTHS),
        log:
            f"{R}/logs/sae/{RUN}/{{mode}}.log",
        benchmark:
            f"{R}/benchmarks/sae/{RUN}/{{mode}}.tsv"
        threads: 1
        resources:
            mem_mb=3000,
            runtime=60 * len(META_DEPTHS),
        shell:
            "metasae --threads {threads} {params.chain} > {log} 2>&1"
