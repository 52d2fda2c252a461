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
