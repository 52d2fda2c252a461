# The own-rate table (experiment.own_lr): every method adapted at the rate best for its own
# initialisation on the val tasks (same grid and rule as scratch's tune-lr), with scratch's
# validation thresholds, so that no method is handicapped by a rate tuned for another.
# Scratch's row is the main run (its own rate is the scratch rate).


rule tune_method_lr:
    input:
        tasks=f"{OUT}/tasks/{{pde}}.nc",
        init=f"{OUT}/meta/{{pde}}/{{method}}/seed{{seed}}/init.pt",
    output:
        f"{OUT}/own_lr/tune/{{pde}}/{{method}}/seed{{seed}}.nc",
    log:
        f"{LOGS}/own_lr/tune/{{pde}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmark/own_lr/tune/{{pde}}/{{method}}/seed{{seed}}.tsv"
    params:
        hydra=hydra_args_gpu,
        digest=config_digest("tune-method-lr", DEVICE),
    threads: THREADS
    resources:
        gpu=GPUS,
    conda:
        "../envs/metapinn.yaml"
    shell:
        f"{TORCH_JOB} tune-lr {{params.hydra}} threads={{threads}}"
        " method={wildcards.method} seed={wildcards.seed} tasks_file={input.tasks}"
        " init={input.init} out={output} > {log} 2>&1"


use rule adapt as adapt_own_lr with:
    input:
        unpack(adapt_own_lr_inputs),
    output:
        f"{OUT}/own_lr/adapt/{{pde}}/{{method}}/seed{{seed}}.nc",
    log:
        f"{LOGS}/own_lr/adapt/{{pde}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmark/own_lr/adapt/{{pde}}/{{method}}/seed{{seed}}.tsv"


use rule collect as collect_own_lr with:
    input:
        expand(f"{OUT}/adapt/{{pde}}/scratch/seed{{seed}}.nc", pde=PDES, seed=SEEDS)
        + expand(
            f"{OUT}/own_lr/adapt/{{pde}}/{{method}}/seed{{seed}}.nc",
            pde=PDES,
            method=OWN_LR_METHODS,
            seed=SEEDS,
        ),
    output:
        f"{OUT}/own_lr/convergence.nc",
    log:
        f"{LOGS}/own_lr/collect.log",


use rule tables as tables_own_lr with:
    input:
        convergence=f"{OUT}/own_lr/convergence.nc",
        histories=expand(
            f"{OUT}/meta/{{pde}}/{{method}}/seed{{seed}}/history.nc",
            pde=PDES,
            method=OWN_LR_METHODS,
            seed=SEEDS,
        ),
    output:
        csv=report(
            f"{OUT}/tables/speedup_own_lr.csv",
            caption="../report/speedup_own_lr.rst",
            category="Overview",
            labels={"table": "speedup, each method at its own rate (CSV)"},
        ),
        md=f"{OUT}/tables/speedup_own_lr.md",
        tex=f"{OUT}/tables/speedup_own_lr.tex",
    log:
        f"{LOGS}/own_lr/tables.log",


use rule speedup_overview as speedup_overview_own_lr with:
    input:
        f"{OUT}/own_lr/convergence.nc",
    output:
        pdf=f"{OUT}/figures/speedup_overview_own_lr.pdf",
        png=report(
            f"{OUT}/figures/speedup_overview_own_lr.png",
            caption="../report/speedup_overview_own_lr.rst",
            category="Overview",
            labels={"figure": "speedups, each method at its own rate"},
        ),
    log:
        f"{LOGS}/own_lr/speedup_overview.log",
