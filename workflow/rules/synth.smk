# Planted feature hierarchies of known depth (issue 16): synth_tree writes an activation cache in place of
# train_classifier + cache_acts (results/acts/synth/seed<N>/<tree>/synth/) with the oracle stack (the planted
# levels) and the shuffled control (a wrong hierarchy of the same widths) beside it, the usual train_stack
# rule trains a stack on it, score-synth scores every depth of every stack against the planted levels, and
# synth-summary tabulates each optimal-depth criterion's estimate against the planted depth per stack
# (criteria.csv's `stack`).
SYNTH_RUNS = study.synth_runs(config)
SYNTH_RUN = "synth/seed{seed}/{probe}/synth/{sae}"
SYNTH_ACTS = f"{R}/acts/synth/seed{{seed}}/{{probe}}/synth"
# The analytic stacks (synth-oracle) have folders 1..6 (stopped past L + 2): those the trained stacks have
ANALYTIC_KINDS = ["oracle", "shuffled"]
ANALYTIC_DEPTHS = [f for f in STACK_FOLDERS if f == "depth1" or int(f.rsplit("depth", 1)[1]) <= 6]
ANALYTIC_RUN = "synth/seed{seed}/{probe}/synth/{kind}"

ruleorder: synth_tree > cache_acts
ruleorder: synth_tree > train_stack
ruleorder: synth_tree > score_synth


def synth_score_command(w, folder, run):
    run = run.format(**dict(w.items()))
    return "score-synth " + flags(depth_dir=f"{R}/sae/{run}/{folder}", out=f"{R}/synth_scores/{run}/{folder}")


def synth_tree_chain(w):
    """synth-acts, then per analytic kind its stack (synth-oracle) and every depth's score, in one process."""
    acts = SYNTH_ACTS.format(**dict(w.items()))
    commands = [f"synth-acts {flags(tree=as_json(study.synth_tree_params(config, w.probe)), seed=w.seed, out=acts)}"]
    for kind in ANALYTIC_KINDS:
        run = ANALYTIC_RUN.format(seed=w.seed, probe=w.probe, kind=kind)
        commands.append(f"synth-oracle {flags(acts_dir=acts, kind=kind, seed=w.seed, out=f'{R}/sae/{run}')}")
        commands += [synth_score_command(w, folder, run) for folder in ANALYTIC_DEPTHS]
    return chained(commands)


def analytic_outputs(stage, file):
    return [
        f"{R}/{stage}/{ANALYTIC_RUN.replace('{kind}', kind)}/{folder}/{file}"
        for kind in ANALYTIC_KINDS
        for folder in ANALYTIC_DEPTHS
    ]


rule synth_tree:
    """A forest of planted trees (config synth.trees.<probe>) as an activation cache with its truth, and
    beside it the oracle stack (the planted levels themselves) and the shuffled control (a wrong hierarchy of
    the same widths) as ordinary depth folders, each depth scored against the planted levels exactly as a
    trained stack's; the seed draws the forest and the shuffle."""
    conda:
        "../envs/metasae.yaml"
    output:
        acts=f"{SYNTH_ACTS}/acts.safetensors",
        manifest=f"{SYNTH_ACTS}/manifest.json",
        metrics=analytic_outputs("sae", "metrics.json"),
        scores=analytic_outputs("synth_scores", "score.json"),
    params:
        chain=synth_tree_chain,
    log:
        f"{R}/logs/synth_tree/seed{{seed}}/{{probe}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "metasae --threads {threads} {params.chain} > {log} 2>&1"


rule score_synth:
    """Every depth of one trained planted-tree stack (both modes) scored against the planted levels."""
    conda:
        "../envs/metasae.yaml"
    input:
        sae=lambda w: [f"{R}/sae/{SYNTH_RUN.format(**dict(w.items()))}/{f}/metrics.json" for f in STACK_FOLDERS],
    output:
        scores=[f"{R}/synth_scores/{SYNTH_RUN}/{f}/score.json" for f in STACK_FOLDERS],
    params:
        chain=lambda w: chained(synth_score_command(w, f, SYNTH_RUN) for f in STACK_FOLDERS),
    log:
        f"{R}/logs/synth_scores/seed{{seed}}/{{probe}}/{{sae}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "metasae --threads {threads} {params.chain} > {log} 2>&1"


def synth_score_files():
    trained = [f"{R}/synth_scores/{run.path}/{f}/score.json" for run in SYNTH_RUNS for f in STACK_FOLDERS]
    analytic = [
        path.format(seed=run.seed, probe=run.probe)
        for run in SYNTH_RUNS
        for path in analytic_outputs("synth_scores", "score.json")
    ]
    return trained + sorted(set(analytic))


rule synth_summary:
    """Stack x criterion x planted depth: criteria.csv, synth_depth.csv, synth_accuracy.csv, synth_scores.csv,
    per-level recovery: synth_recovery.csv, and the plain statistics read as criteria: statistics.csv,
    statistics_accuracy.csv."""
    conda:
        "../envs/metasae.yaml"
    input:
        scores=synth_score_files(),
    output:
        criteria=report(f"{R}/synth_summary/criteria.csv", category="Summary"),
        depth=f"{R}/synth_summary/synth_depth.csv",
        accuracy=f"{R}/synth_summary/synth_accuracy.csv",
        scores=f"{R}/synth_summary/synth_scores.csv",
        recovery_table=f"{R}/synth_summary/synth_recovery.csv",
        statistics=f"{R}/synth_summary/statistics.csv",
        statistics_accuracy=f"{R}/synth_summary/statistics_accuracy.csv",
        figure=report(f"{R}/synth_summary/synth_depth.png", category="Figures vs depth"),
        recovery=report(f"{R}/synth_summary/synth_recovery.png", category="Figures vs depth"),
    params:
        out=lambda w, output: str(Path(output.criteria).parent),
        config=as_json(config),
    log:
        f"{R}/logs/synth_summary.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "metasae --threads {threads} synth-summary --config-json {params.config:q} --out {params.out}"
        " {input.scores:q} > {log} 2>&1"


def synth_targets():
    return rules.synth_summary.output if SYNTH_RUNS else []
