def cache_command(w, input, manifest, role):
    """The cache-acts command of one of a probe's two image sets (study.probe_ref: eval, study.fit_ref: fit)."""
    ref = (study.fit_ref if role == "fit" else study.probe_ref)(config, w.probe)
    shuffle = " --shuffle-labels" if study_names.probe_shuffled(config, w.probe) else ""
    return (
        f"cache-acts --model-dir {Path(input.model).parent} --dataset {shlex.quote(ref)} --layer {w.layer}"
        f" --role {role}{shuffle} --seed {w.seed} {common_flags()} --out {Path(manifest).parent}"
    )


# Where every run trains its own stack (meta.stack_from: own), every cached layer needs its fit cache too, and
# one job writes both (one interpreter start-up and one set of imports instead of two); otherwise
# (in_distribution) only the in-distribution probe's runs train, and cache_fit_acts writes their fit caches.
FIT_WITH_EVAL = config["meta"].get("stack_from", "own") == "own"
ACTS_DIR = "{clf}/seed{seed}/{probe}/{layer}"


def cache_outputs(stage):
    return {
        "acts": f"{R}/{stage}/{ACTS_DIR}/acts.safetensors",
        "manifest": f"{R}/{stage}/{ACTS_DIR}/manifest.json",
    }


def fit_cache_outputs():
    return {f"fit_{k}": v for k, v in cache_outputs("fit_acts").items()} if FIT_WITH_EVAL else {}


def cache_chain(w, input, output):
    commands = [cache_command(w, input, output.manifest, "eval")]
    if FIT_WITH_EVAL:
        commands.append(cache_command(w, input, output.fit_manifest, "fit"))
    return chained(commands)


rule cache_acts:
    """One layer's activations of a trained classifier over a probe's eval images (no augmentation): what
    every statistic of its stack is computed on; no SAE of the stack trains on them. With them (stack_from:
    own), the same layer over the probe's fit images, disjoint from the eval set: what its stack trains on."""
    conda:
        "../envs/metasae.yaml"
    input:
        model=rules.train_classifier.output.model,
    output:
        **cache_outputs("acts"),
        **fit_cache_outputs(),
    params:
        chain=cache_chain,
    log:
        f"{R}/logs/cache_acts/{ACTS_DIR}.log",
    benchmark:
        f"{R}/benchmarks/cache_acts/{ACTS_DIR}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60 if FIT_WITH_EVAL else 30,
    shell:
        "metasae --threads {threads} {params.chain} > {log} 2>&1"


if not FIT_WITH_EVAL:

    rule cache_fit_acts:
        """The same layer over the probe's fit images: what its SAE stack trains on (disjoint from the eval
        set)."""
        conda:
            "../envs/metasae.yaml"
        input:
            model=rules.train_classifier.output.model,
        output:
            **cache_outputs("fit_acts"),
        params:
            command=lambda w, input, output: cache_command(w, input, output.manifest, "fit"),
        log:
            f"{R}/logs/cache_fit_acts/{ACTS_DIR}.log",
        benchmark:
            f"{R}/benchmarks/cache_fit_acts/{ACTS_DIR}.tsv"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=30,
        shell:
            "metasae --threads {threads} {params.command} > {log} 2>&1"
