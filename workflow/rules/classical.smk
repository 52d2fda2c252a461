# the solver-in-the-loop baseline (experiment.classical): scipy least squares over θ around
# the family's reference solver, on the tasks of classical.splits, with the coefficient
# threshold of the tune file (numpy/scipy only: one thread)
rule classical:
    input:
        tasks=f"{OUT}/tasks/{{pde}}.nc",
        thresholds=f"{OUT}/tune/{{pde}}.nc",
    output:
        f"{OUT}/classical/{{pde}}.nc",
    log:
        f"{LOGS}/classical/{{pde}}.log",
    benchmark:
        f"{LOGS}/benchmark/classical/{{pde}}.tsv"
    params:
        hydra=hydra_args,
        digest=classical_digest,
    threads: 1
    conda:
        "../envs/metapinn.yaml"
    shell:
        "metapinn classical {params.hydra} threads={threads} tasks_file={input.tasks}"
        " threshold_file={input.thresholds} out={output} > {log} 2>&1"
