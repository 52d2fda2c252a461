# Validation and helpers shared by every rule.
import functools
import hashlib
import json
import os
from pathlib import Path

from omegaconf import OmegaConf
from snakemake.utils import min_version, validate

from metapinn.config import ConfigError, compose, digest
from metapinn.meta import TUNED_RATE_METHODS
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
def _compose(pde, method, scale="1"):
    try:
        return compose([f"experiment={EXPERIMENT}", f"pde={pde}", f"method={method}"]
                       + ([f"budget_scale={scale}"] if scale != "1" else []), CONFIG_DIR)
    except ConfigError as e:
        raise ValueError(f"config key 'experiment' ({EXPERIMENT}): {e}") from None


def job_config(pde, method, scale="1"):
    """The configuration a job of (pde, method) composes (at ``scale`` × the meta-training
    budget). The ``pde`` node does not depend on the method nor ``method`` on the family, so
    families × methods need only families + methods compositions (each takes ~0.3 s)."""
    cfg = _compose(pde, "scratch").copy()
    if method != "scratch" or scale != "1":
        cfg.method = _compose(PDES[0], method, scale).method
        cfg.budget_scale = float(scale)
    return cfg


# the experiment, read through the same composition as the jobs (schema-checked)
EXP = _compose("burgers", "scratch").experiment
PDES, METHODS, SEEDS = list(EXP.pdes), list(EXP.methods), [int(s) for s in EXP.seeds]
OUT = f"results/{EXPERIMENT}"
LOGS = f"logs/{EXPERIMENT}"
META_METHODS = [m for m in METHODS if m != "scratch"]
# the compute figure: these methods also meta-trained at these multiples of the budget
BUDGET_SCALES = [f"{float(s):g}" for s in EXP.budget_scales if float(s) != 1.0]
BUDGET_METHODS = [m for m in EXP.budget_methods if m in METHODS] if BUDGET_SCALES else []
# the own-rate table's methods (scratch's row is its main run)
OWN_LR_METHODS = [m for m in (EXP.own_lr_methods or META_METHODS) if m in META_METHODS]
# one Inductor cache for the jobs of a run: a compiled training step (adapt.compile) is
# built once per shape and run, not once per job; on a cluster it sits on the shared disk
TORCH_JOB = f"TORCHINDUCTOR_CACHE_DIR={OUT}/.inductor-cache metapinn"


wildcard_constraints:
    pde="|".join(PDES),
    method="|".join(METHODS),
    seed=r"\d+",
    scale=r"[0-9.e+-]+",


def config_digest(command, device="cpu"):
    """A params function: the digest of the settings that decide ``command``'s results
    (``metapinn.config.DIGEST_KEYS``). As a tracked param it makes Snakemake rerun exactly
    the jobs whose resolved settings changed, whichever file the change was made in."""

    def of(wildcards):
        cfg = job_config(wildcards.pde, getattr(wildcards, "method", "scratch"),
                         getattr(wildcards, "scale", "1"))
        cfg.seed = int(getattr(wildcards, "seed", 0))
        cfg.device = device
        return digest(cfg, command)

    return of


def hydra_args(wildcards, device="cpu"):
    """The Hydra overrides every job of this experiment shares (threads come from the
    rule's ``threads``, which is no rerun trigger: it changes no result); a job of the
    compute figure adds its multiple of the budget."""
    scale = getattr(wildcards, "scale", None)
    return (f"--config-dir={CONFIG_ARG} experiment={EXPERIMENT} pde={wildcards.pde} device={device}"
            + (f" budget_scale={scale}" if scale else ""))


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


def meta_inputs(wildcards):
    """The family's tasks; for the baselines trained at the tuned rate, the tune file."""
    inputs = {"tasks": f"{OUT}/tasks/{wildcards.pde}.nc"}
    if wildcards.method in TUNED_RATE_METHODS:
        inputs["lr"] = f"{OUT}/tune/{wildcards.pde}.nc"
    return inputs


def adapt_budget_inputs(wildcards):
    """As :func:`adapt_inputs`, from the init.pt meta-trained at a multiple of the budget."""
    meta = f"{OUT}/budget/meta/{wildcards.pde}/{wildcards.method}/x{wildcards.scale}"
    return {"tasks": f"{OUT}/tasks/{wildcards.pde}.nc", "lr": f"{OUT}/tune/{wildcards.pde}.nc",
            "init": os.path.join(meta, f"seed{wildcards.seed}", "init.pt")}


def adapt_own_lr_inputs(wildcards):
    """As :func:`adapt_inputs`, at the method's own tuned rate (scratch's thresholds)."""
    pde, method, seed = wildcards.pde, wildcards.method, wildcards.seed
    return {"tasks": f"{OUT}/tasks/{pde}.nc",
            "lr": f"{OUT}/own_lr/tune/{pde}/{method}/seed{seed}.nc",
            "thresholds": f"{OUT}/tune/{pde}.nc",
            "init": f"{OUT}/meta/{pde}/{method}/seed{seed}/init.pt"}


def meta_budget_inputs(wildcards):
    """The compute figure's runs: scratch's, every budget method's main run and its runs at
    the other multiples, with the meta-training histories that say what each spent."""
    main = [f"{OUT}/adapt/{pde}/{m}/seed{s}.nc"
            for pde in PDES for m in ["scratch", *BUDGET_METHODS] for s in SEEDS]
    scaled = expand(f"{OUT}/budget/adapt/{{pde}}/{{method}}/x{{scale}}/seed{{seed}}.nc",
                    pde=PDES, method=BUDGET_METHODS, scale=BUDGET_SCALES, seed=SEEDS)
    histories = [f"{OUT}/meta/{pde}/{m}/seed{s}/history.nc"
                 for pde in PDES for m in BUDGET_METHODS for s in SEEDS]
    histories += expand(f"{OUT}/budget/meta/{{pde}}/{{method}}/x{{scale}}/seed{{seed}}/"
                        "history.nc", pde=PDES, method=BUDGET_METHODS, scale=BUDGET_SCALES,
                        seed=SEEDS)
    return {"adapt": main + scaled, "histories": histories}


def classical_digest(wildcards):
    """A params function: a fingerprint of what decides the classical job's result besides
    its input files (the ``classical`` settings and a threshold fixed by hand), so that an
    edit of either reruns it."""
    cfg = job_config(wildcards.pde, "scratch")
    settings = {"classical": OmegaConf.to_container(cfg.classical, resolve=True),
                "threshold": OmegaConf.to_container(cfg.pde.threshold, resolve=True)}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


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
        + (expand(f"{OUT}/tables/speedup_own_lr.{{ext}}", ext=["csv", "md", "tex"])
           + expand(f"{OUT}/figures/speedup_overview_own_lr.{{ext}}", ext=["pdf", "png"])
           if EXP.own_lr else [])
        + ([f"{OUT}/tables/meta_budget.csv"]
           + expand(f"{OUT}/figures/meta_budget.{{ext}}", ext=["pdf", "png"])
           if BUDGET_METHODS else [])
        + (expand(f"{OUT}/classical/{{pde}}.nc", pde=PDES) if EXP.classical else [])
    )
