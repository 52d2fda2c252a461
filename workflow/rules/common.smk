# Validation and helpers shared by every rule.
from pathlib import Path

import yaml
from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

EXPERIMENT = config["experiment"]
_exp_dir = Path(workflow.basedir) / "config" / "experiment"
_exp_file = _exp_dir / f"{EXPERIMENT}.yaml"
if not _exp_file.is_file():
    raise ValueError(
        f"config key 'experiment': unknown experiment {EXPERIMENT!r}; valid choices: "
        + ", ".join(sorted(p.stem for p in _exp_dir.glob("*.yaml")))
    )
EXP = yaml.safe_load(_exp_file.read_text())["experiment"]
PDES, METHODS, SEEDS = EXP["pdes"], EXP["methods"], [int(s) for s in EXP["seeds"]]
OUT = f"results/{EXPERIMENT}"
LOGS = f"logs/{EXPERIMENT}"
THREADS = int(config["threads"])


wildcard_constraints:
    pde="|".join(PDES),
    method="|".join(METHODS),
    seed=r"\d+",


def hydra_args(wildcards):
    """The Hydra overrides every job of this experiment shares."""
    return f"experiment={EXPERIMENT} pde={wildcards.pde} threads={THREADS}"


def all_targets():
    return expand(f"{OUT}/figures/convergence_{{pde}}.{{ext}}", pde=PDES, ext=["pdf", "png"])
