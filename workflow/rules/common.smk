# Validation and helpers shared by every rule.
import functools
import os
from pathlib import Path

from snakemake.utils import min_version, validate

from metapinn.config import ConfigError, compose, digest
from metapinn.figures import FAMILY_FIGURES

min_version("9.0")

validate(config, "../schemas/config.schema.yaml")

EXPERIMENT = config["experiment"]
# every job reads the Hydra configuration of this checkout (not of wherever metapinn is
# installed), named relative to the working directory so that moving the checkout with its
# results reruns nothing
CONFIG_DIR = Path(workflow.basedir) / "config"
CONFIG_ARG = os.path.relpath(CONFIG_DIR)
THREADS = int(config["threads"])
DEVICE = config.get("device", "cpu")


@functools.cache
def _compose(pde, method):
    try:
        return compose([f"experiment={EXPERIMENT}", f"pde={pde}", f"method={method}"],
                       CONFIG_DIR)
    except ConfigError as e:
        raise ValueError(f"config key 'experiment' ({EXPERIMENT}): {e}") from None


def job_config(pde, method):
    """The configuration a job of (pde, method) composes. The ``pde`` node does not depend on
    the method nor ``method`` on the family, so families × methods need only families +
    methods compositions (each takes ~0.3 s)."""
    cfg = _compose(pde, "scratch").copy()
    if method != "scratch":
        cfg.method = _compose(PDES[0], method).method
    return cfg


# the experiment, read through the same composition as the jobs (schema-checked)
EXP = _compose("burgers", "scratch").experiment
PDES, METHODS, SEEDS = list(EXP.pdes), list(EXP.methods), [int(s) for s in EXP.seeds]
OUT = f"results/{EXPERIMENT}"
LOGS = f"logs/{EXPERIMENT}"
META_METHODS = [m for m in METHODS if m != "scratch"]
# one Inductor cache for the jobs of a run: a compiled training step (adapt.compile) is
# built once per shape and run, not once per job; on a cluster it sits on the shared disk
TORCH_JOB = f"TORCHINDUCTOR_CACHE_DIR={OUT}/.inductor-cache metapinn"


wildcard_constraints:
    pde="|".join(PDES),
    method="|".join(METHODS),
    seed=r"\d+",


def config_digest(command, device="cpu"):
    """A params function: the digest of the settings that decide ``command``'s results
    (``metapinn.config.DIGEST_KEYS``). As a tracked param it makes Snakemake rerun exactly
    the jobs whose resolved settings changed, whichever file the change was made in."""

    def of(wildcards):
        cfg = job_config(wildcards.pde, getattr(wildcards, "method", "scratch"))
        cfg.seed = int(getattr(wildcards, "seed", 0))
        cfg.device = device
        return digest(cfg, command)

    return of


def hydra_args(wildcards, device="cpu"):
    """The Hydra overrides every job of this experiment shares (threads come from the
    rule's ``threads``, which is no rerun trigger: it changes no result)."""
    return f"--config-dir={CONFIG_ARG} experiment={EXPERIMENT} pde={wildcards.pde} device={device}"


def hydra_args_gpu(wildcards):
    """For the rules that ask for a GPU when ``device: cuda`` (meta_train, tune_scratch_lr,
    adapt): they run on the configured device; every other rule runs on the CPU."""
    return hydra_args(wildcards, DEVICE)


GPUS = 1 if DEVICE == "cuda" else 0


def adapt_inputs(wildcards):
    """Every method adapts with the learning rate tuned for scratch; every method but
    scratch from its meta-trained init.pt."""
    inputs = {"tasks": f"{OUT}/tasks/{wildcards.pde}.nc", "lr": f"{OUT}/tune/{wildcards.pde}.nc"}
    if wildcards.method != "scratch":
        inputs["init"] = f"{OUT}/meta/{wildcards.pde}/{wildcards.method}/seed{wildcards.seed}/init.pt"
    return inputs


def family_figure_outputs():
    """Named outputs of the family_figures step: ``<stem>_pdf`` and ``<stem>_png`` (in the report)."""
    out = {}
    for stem, figure in FAMILY_FIGURES.items():
        out[f"{stem}_pdf"] = f"{OUT}/figures/{{pde}}/{stem}.pdf"
        out[f"{stem}_png"] = report(
            f"{OUT}/figures/{{pde}}/{stem}.png",
            caption=f"../report/{stem}.rst",
            category="Figures",
            subcategory="{pde}",
            labels={"family": "{pde}", "figure": figure.title},
        )
    return out


def all_targets():
    figures = list(FAMILY_FIGURES) + (["meta_training"] if META_METHODS else [])
    return (
        expand(f"{OUT}/figures/{{pde}}/{{fig}}.{{ext}}", pde=PDES, fig=figures, ext=["pdf", "png"])
        + expand(f"{OUT}/figures/speedup_overview.{{ext}}", ext=["pdf", "png"])
        + expand(f"{OUT}/figures/threshold_sweep.{{ext}}", ext=["pdf", "png"])
        + expand(f"{OUT}/figures/amortised_cost.{{ext}}", ext=["pdf", "png"])
        + expand(f"{OUT}/taylor/{{pde}}.{{ext}}", pde=PDES, ext=["nc", "pdf", "png"])
        + [f"{OUT}/convergence.nc"]
        + expand(f"{OUT}/tables/speedup.{{ext}}", ext=["csv", "md", "tex"])
    )
