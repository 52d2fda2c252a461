# metapinn pipeline: a table of contents. Each rule calls one library function through the
# `metapinn` CLI; the experiment (config/experiment/<name>.yaml) decides families, methods
# and seeds. `snakemake --cores all` runs `quick`; `--config experiment=tiny` the test size;
# `snakemake --report results/<exp>/report.html --config experiment=<exp>` builds the HTML
# report after a run (the experiment named again: the report is of the configured one).

import os

configfile: os.path.join(workflow.basedir, "workflow", "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/tasks.smk"
include: "workflow/rules/meta.smk"
include: "workflow/rules/adapt.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/budget.smk"
include: "workflow/rules/own_lr.smk"
include: "workflow/rules/classical.smk"


# cheap rules (seconds each): run by the submitting Snakemake itself, never queued on a cluster
localrules:
    all,
    collect,
    family_figures,
    meta_training_figure,
    speedup_overview,
    tables,
    threshold_sweep,
    amortised_cost,
    meta_budget,
    collect_own_lr,
    tables_own_lr,
    speedup_overview_own_lr,


rule all:
    input:
        all_targets(),
    default_target: True
