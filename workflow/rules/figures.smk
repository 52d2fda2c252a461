rule convergence_figure:
    input:
        expand(
            f"{OUT}/adapt/{{{{pde}}}}/{{method}}/seed{{seed}}.nc", method=METHODS, seed=SEEDS
        ),
    output:
        pdf=report(
            f"{OUT}/figures/convergence_{{pde}}.pdf",
            caption="../report/convergence.rst",
            category="Convergence",
        ),
        png=f"{OUT}/figures/convergence_{{pde}}.png",
    log:
        f"{LOGS}/figures/convergence_{{pde}}.log",
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn plot-convergence --pdf {output.pdf} --png {output.png} {input} > {log} 2>&1"


rule taylor_check:
    output:
        nc=f"{OUT}/taylor/{{pde}}.nc",
        pdf=report(
            f"{OUT}/taylor/{{pde}}.pdf",
            caption="../report/taylor.rst",
            category="Taylor check",
        ),
        png=f"{OUT}/taylor/{{pde}}.png",
    log:
        f"{LOGS}/taylor_check/{{pde}}.log",
    params:
        hydra=hydra_args,
    threads: THREADS
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn taylor-check {params.hydra} out={output.nc} > {log} 2>&1"


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


rule tables:
    input:
        convergence=f"{OUT}/convergence.nc",
        inits=expand(
            f"{OUT}/meta/{{pde}}/{{method}}/seed{{seed}}/init.pt",
            pde=PDES,
            method=META_METHODS,
            seed=SEEDS,
        ),
    output:
        csv=f"{OUT}/tables/speedup.csv",
        md=report(
            f"{OUT}/tables/speedup.md",
            caption="../report/speedup.rst",
            category="Tables",
        ),
        tex=f"{OUT}/tables/speedup.tex",
    log:
        f"{LOGS}/tables.log",
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn tables --convergence {input.convergence} --csv {output.csv}"
        " --md {output.md} --tex {output.tex} {input.inits} > {log} 2>&1"
