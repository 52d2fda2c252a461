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
