rule collect:
    input:
        expand(
            f"{OUT}/adapt/{{pde}}/{{method}}/seed{{seed}}.nc",
            pde=PDES,
            method=METHODS,
            seed=SEEDS,
        ),
    output:
        f"{OUT}/convergence.nc",
    log:
        f"{LOGS}/collect.log",
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn collect --out {output} {input} > {log} 2>&1"


rule family_figures:
    input:
        f"{OUT}/convergence.nc",
    output:
        **family_figure_outputs(),
    log:
        f"{LOGS}/figures/{{pde}}.log",
    params:
        out_dir=lambda wc, output: Path(output.convergence_pdf).parent,
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn plot-family --convergence {input} --pde {wildcards.pde}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule meta_training_figure:
    input:
        expand(
            f"{OUT}/meta/{{{{pde}}}}/{{method}}/seed{{seed}}/history.nc",
            method=META_METHODS,
            seed=SEEDS,
        ),
    output:
        pdf=f"{OUT}/figures/{{pde}}/meta_training.pdf",
        png=report(
            f"{OUT}/figures/{{pde}}/meta_training.png",
            caption="../report/meta_training.rst",
            category="Figures",
            subcategory="{pde}",
            labels={"family": "{pde}", "figure": "meta-training curves"},
        ),
    log:
        f"{LOGS}/figures/{{pde}}_meta_training.log",
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn plot-meta-training --pdf {output.pdf} --png {output.png} {input} > {log} 2>&1"


rule speedup_overview:
    input:
        f"{OUT}/convergence.nc",
    output:
        pdf=f"{OUT}/figures/speedup_overview.pdf",
        png=report(
            f"{OUT}/figures/speedup_overview.png",
            caption="../report/speedup_overview.rst",
            category="Overview",
            labels={"figure": "speedups"},
        ),
    log:
        f"{LOGS}/figures/speedup_overview.log",
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn plot-speedups --convergence {input} --pdf {output.pdf} --png {output.png}"
        " > {log} 2>&1"


rule threshold_sweep:
    input:
        f"{OUT}/convergence.nc",
    output:
        pdf=f"{OUT}/figures/threshold_sweep.pdf",
        png=report(
            f"{OUT}/figures/threshold_sweep.png",
            caption="../report/threshold_sweep.rst",
            category="Overview",
            labels={"figure": "threshold sweep"},
        ),
    log:
        f"{LOGS}/figures/threshold_sweep.log",
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn plot-threshold-sweep --convergence {input} --pdf {output.pdf}"
        " --png {output.png} > {log} 2>&1"


rule amortised_cost:
    input:
        convergence=f"{OUT}/convergence.nc",
        histories=expand(
            f"{OUT}/meta/{{pde}}/{{method}}/seed{{seed}}/history.nc",
            pde=PDES,
            method=META_METHODS,
            seed=SEEDS,
        ),
        classical=expand(f"{OUT}/classical/{{pde}}.nc", pde=PDES) if EXP.classical else [],
    output:
        csv=f"{OUT}/tables/amortised_cost.csv",
        pdf=f"{OUT}/figures/amortised_cost.pdf",
        png=report(
            f"{OUT}/figures/amortised_cost.png",
            caption="../report/amortised_cost.rst",
            category="Overview",
            labels={"figure": "amortised cost"},
        ),
    log:
        f"{LOGS}/figures/amortised_cost.log",
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn amortised-cost --convergence {input.convergence} --csv {output.csv}"
        " --pdf {output.pdf} --png {output.png} --classical {input.classical}"
        " -- {input.histories} > {log} 2>&1"


rule taylor_check:
    output:
        nc=f"{OUT}/taylor/{{pde}}.nc",
        pdf=f"{OUT}/taylor/{{pde}}.pdf",
        png=report(
            f"{OUT}/taylor/{{pde}}.png",
            caption="../report/taylor.rst",
            category="Taylor check",
            labels={"family": "{pde}", "figure": "Taylor check"},
        ),
    log:
        f"{LOGS}/taylor_check/{{pde}}.log",
    benchmark:
        f"{LOGS}/benchmark/taylor_check/{{pde}}.tsv"
    params:
        hydra=hydra_args,
        digest=config_digest("taylor-check"),
    threads: THREADS
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn taylor-check {params.hydra} threads={threads} out={output.nc} > {log} 2>&1"


rule tables:
    input:
        convergence=f"{OUT}/convergence.nc",
        histories=expand(
            f"{OUT}/meta/{{pde}}/{{method}}/seed{{seed}}/history.nc",
            pde=PDES,
            method=META_METHODS,
            seed=SEEDS,
        ),
    output:
        csv=report(
            f"{OUT}/tables/speedup.csv",
            caption="../report/speedup.rst",
            category="Overview",
            labels={"table": "speedup (CSV)"},
        ),
        md=f"{OUT}/tables/speedup.md",
        tex=f"{OUT}/tables/speedup.tex",
    log:
        f"{LOGS}/tables.log",
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn tables --convergence {input.convergence} --csv {output.csv}"
        " --md {output.md} --tex {output.tex} {input.histories} > {log} 2>&1"
