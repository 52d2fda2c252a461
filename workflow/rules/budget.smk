# The compute figure (experiment.budget_scales ≠ [1]): the budget methods meta-trained at
# other multiples of experiment.meta_budget and adapted like the main runs; the same
# commands as meta_train and adapt, with budget_scale=<scale> among their overrides.


use rule meta_train as meta_train_budget with:
    output:
        init=f"{OUT}/budget/meta/{{pde}}/{{method}}/x{{scale}}/seed{{seed}}/init.pt",
        history=f"{OUT}/budget/meta/{{pde}}/{{method}}/x{{scale}}/seed{{seed}}/history.nc",
    log:
        f"{LOGS}/budget/meta_train/{{pde}}/{{method}}/x{{scale}}/seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmark/budget/meta_train/{{pde}}/{{method}}/x{{scale}}/seed{{seed}}.tsv"


use rule adapt as adapt_budget with:
    input:
        unpack(adapt_budget_inputs),
    output:
        f"{OUT}/budget/adapt/{{pde}}/{{method}}/x{{scale}}/seed{{seed}}.nc",
    log:
        f"{LOGS}/budget/adapt/{{pde}}/{{method}}/x{{scale}}/seed{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmark/budget/adapt/{{pde}}/{{method}}/x{{scale}}/seed{{seed}}.tsv"


rule meta_budget:
    input:
        unpack(meta_budget_inputs),
    output:
        csv=f"{OUT}/tables/meta_budget.csv",
        pdf=f"{OUT}/figures/meta_budget.pdf",
        png=report(
            f"{OUT}/figures/meta_budget.png",
            caption="../report/meta_budget.rst",
            category="Overview",
            labels={"figure": "speedup against meta-training compute"},
        ),
    log:
        f"{LOGS}/figures/meta_budget.log",
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn meta-budget --csv {output.csv} --pdf {output.pdf} --png {output.png}"
        " --adapt {input.adapt} --histories {input.histories} > {log} 2>&1"
