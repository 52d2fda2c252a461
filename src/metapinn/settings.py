"""Typed settings: one frozen dataclass per configuration node, the single source of every
key's type and default.

These records are both the Hydra schema (registered in a ``ConfigStore`` by
:mod:`metapinn.config`, so that every override is checked by type and every unknown key is
refused) and the settings the library functions take explicitly. The YAML files in
``config/`` only override them. A method's own settings subclass :class:`MethodSettings`
in its module (e.g. ``LeapSettings`` in :mod:`metapinn.meta.leap`).

This module imports neither torch nor Hydra: reading a configuration stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from omegaconf import MISSING

SPLITS = ("train", "val", "test", "ood")
OPTIMIZERS = ("adam", "sgd")


def _positive(where: str, **values) -> None:
    for key, value in values.items():
        if not value > 0:
            raise ValueError(f"{where}.{key} must be > 0, got {value}")


def _at_least(where: str, low: int, **values) -> None:
    for key, value in values.items():
        if value < low:
            raise ValueError(f"{where}.{key} must be ≥ {low}, got {value}")


@dataclass(frozen=True)
class AdaptSettings:
    """The inner optimiser and its schedule (config node ``adapt``; identical for every
    method in evaluation).

    Args:
        steps: first-order optimiser steps.
        lr: learning rate at step 0.
        lr_decay: factor the learning rate has decayed by at the last step (exponential
            schedule; 1 keeps it constant).
        optimizer: ``adam`` or ``sgd``.
        lbfgs_steps: L-BFGS iterations after the first-order steps (evaluation only).
        log_every: evaluation interval in steps. Logged are every step up to 10, then
            steps at most 10 % apart, every ``log_every``-th step and the last
            (:meth:`log_steps`), so that steps to a threshold have ≤ 10 % resolution.
        dense_log: the dense early logging above; ``false`` logs step 0, every
            ``log_every``-th step and the last only (``tune-lr`` reads final errors only
            and runs so: each evaluation on the reference grid costs about as much as
            a few training steps).
        coef_lr_factor: learning rate of the unknown coefficients (``"coef"``) relative to
            the network's.
        compile: run each step (loss, gradient and optimiser update) as one
            ``torch.compile``d function in the non-differentiable path (evaluation, tune-lr,
            identify, the transfer baseline's fit): about 2× faster per step on CPU
            (``benchmarks/step_time.py``), for a compile of ~5–10 s per process with a warm
            Inductor cache (about a minute cold). It pays from about a thousand steps per
            process; ``false`` keeps the eager step (the ``tiny`` test experiment does).
            An L-BFGS phase of at least 500 iterations (``lbfgs_steps``) compiles its loss
            and gradient the same way (0.71× the eager time per iteration on the Burgers
            shock case, ``benchmarks/lbfgs_time.py``). A meta-training job of at least
            ``metapinn.meta.base.COMPILE_INNER_FROM`` (25,000) graph-free gradient
            evaluations compiles them too: Reptile's and LEAP's inner runs, iMAML's
            proximal solve, pretraining's and the hypernetwork's gradients, and that job's
            validation runs (``benchmarks/meta_compile.py``).
        batch: adapt the tasks of an ``adapt-tasks`` job, or the (learning rate × task)
            grid of ``tune-lr``, together as one ``torch.func.vmap`` program
            (:func:`metapinn.adapt.adapt_batch`); each task keeps its own learning rate,
            optimiser state, log and divergence flag. ``null`` (default): batched on CUDA,
            one task after another on the CPU. Runs with ``lbfgs_steps`` are never batched.
        eval_stride: the logged ``u_rel_l2`` is taken on every ``eval_stride``-th node of
            the reference grid along each axis (1: every node). A forward pass over the
            full grid (25,856 nodes for Burgers and CDR, 65,536 for Darcy) costs as much
            as 5–20 training steps on one CPU thread and is repeated at every logged step;
            stride 2 keeps a quarter of the nodes, evenly spread, so the error is the same
            discrete L2 norm on a grid twice as coarse. With ``compile`` a solve that logs
            at least 50 steps (``metapinn.adapt.EVAL_COMPILE_FROM``) compiles this
            forward pass too (0.48–0.88× the eager time, the larger grids gaining more:
            ``benchmarks/eval_cost.py``).
    """

    steps: int = 5000
    lr: float = 2e-3
    lr_decay: float = 0.1
    optimizer: str = "adam"
    lbfgs_steps: int = 0
    log_every: int = 100
    dense_log: bool = True
    coef_lr_factor: float = 10.0
    compile: bool = True
    batch: bool | None = None
    eval_stride: int = 1

    def __post_init__(self):
        _at_least("adapt", 0, steps=self.steps, lbfgs_steps=self.lbfgs_steps)
        _at_least("adapt", 1, log_every=self.log_every, eval_stride=self.eval_stride)
        _positive("adapt", lr=self.lr, coef_lr_factor=self.coef_lr_factor)
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"adapt.lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown adapt.optimizer {self.optimizer!r}; valid choices: "
                             f"{', '.join(OPTIMIZERS)}")

    @property
    def total_steps(self) -> int:
        return self.steps + self.lbfgs_steps

    def log_steps(self) -> tuple[int, ...]:
        """The logged steps, ``0 … total_steps``: every step up to 10, then each at most
        10 % beyond the previous one (⌊1.1 s⌋), every ``log_every``-th, and the last (without
        ``dense_log``: step 0, every ``log_every``-th and the last)."""
        total = self.total_steps
        dense, s = set(range(min(total, 10) + 1) if self.dense_log else {0}), 10
        while self.dense_log and s < total:
            s = int(1.1 * s)
            dense.add(min(s, total))
        dense |= set(range(0, total + 1, self.log_every)) | {total}
        return tuple(sorted(dense))

    def decay_at(self, step: int) -> float:
        """The schedule's factor at ``step``: the learning rate is ``lr * decay_at(step)``."""
        return self.lr_decay ** (step / max(self.steps, 1))

    def lr_at(self, step: int) -> float:
        return self.lr * self.decay_at(step)


@dataclass(frozen=True)
class LossWeights:
    """λ_r, λ_b, λ_d of the task loss (config node ``pde.weights``)."""

    residual: float = 1.0
    boundary: float = 1.0
    data: float = 1.0

    def __post_init__(self):
        for name in ("residual", "boundary", "data"):
            if getattr(self, name) < 0:
                raise ValueError(f"pde.weights.{name} must be ≥ 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Thresholds:
    """Steps-to-threshold bounds (config node ``pde.threshold``). ``null`` (default): from
    scratch's runs on the ``val`` tasks, by the rule of ``tune-lr``
    (:func:`metapinn.evaluate.tune_scratch_lr`), so that no test task chooses them; set
    both to fix them by hand."""

    u_rel_l2: float | None = None
    coef_rel_err: float | None = None

    def __post_init__(self):
        if (self.u_rel_l2 is None) != (self.coef_rel_err is None):
            raise ValueError("pde.threshold: set both u_rel_l2 and coef_rel_err, or neither "
                             "(then both come from the val runs of tune-lr)")
        if self.u_rel_l2 is not None:
            _positive("pde.threshold", u_rel_l2=self.u_rel_l2, coef_rel_err=self.coef_rel_err)

    @property
    def from_validation(self) -> bool:
        return self.u_rel_l2 is None


@dataclass(frozen=True)
class PDESettings:
    """A task family and its solver settings (config group ``pde/``).

    Args:
        name: the family's registry name.
        grid: reference-grid settings, passed to the family's constructor.
        n_obs: observations per task (reference-grid nodes).
        noise: observation noise standard deviation relative to std(u_ref).
        n_collocation, n_boundary: the solver's residual and boundary points.
        weights: the loss weights.
        threshold: steps-to-threshold bounds.
        loss_scale: typical gradient scale of the loss; SGD inner steps use lr / loss_scale.
        coef_lr_factor: replaces ``adapt.coef_lr_factor`` for this family (``None``: keep).
    """

    name: str = MISSING
    grid: dict[str, int] = field(default_factory=dict)
    n_obs: int = 200
    noise: float = 0.01
    n_collocation: int = 2000
    n_boundary: int = 200
    weights: LossWeights = field(default_factory=LossWeights)
    threshold: Thresholds = field(default_factory=Thresholds)
    loss_scale: float = 1.0
    coef_lr_factor: float | None = None

    def __post_init__(self):
        _at_least("pde", 1, n_obs=self.n_obs, n_collocation=self.n_collocation)
        _at_least("pde", 4, n_boundary=self.n_boundary)
        _positive("pde", loss_scale=self.loss_scale)
        if self.noise < 0:
            raise ValueError(f"pde.noise must be ≥ 0, got {self.noise}")
        if self.coef_lr_factor is not None:
            _positive("pde", coef_lr_factor=self.coef_lr_factor)


@dataclass(frozen=True)
class ModelSettings:
    """The PINN network (config group ``model/``): a tanh MLP with these hidden widths."""

    hidden: list[int] = field(default_factory=lambda: [50, 50, 50, 50])

    def __post_init__(self):
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"model.hidden must be a non-empty list of positive widths, "
                             f"got {list(self.hidden)}")


@dataclass(frozen=True)
class TaskSplits:
    """How many tasks each split of a family's dataset holds (config node ``tasks``)."""

    n_train: int = 8
    n_val: int = 2
    n_test: int = 4
    n_ood: int = 2
    seed: int = 0

    def __post_init__(self):
        _at_least("tasks", 0, n_train=self.n_train, n_val=self.n_val, n_test=self.n_test,
                  n_ood=self.n_ood, seed=self.seed)
        if self.n_train + self.n_val + self.n_test + self.n_ood < 1:
            raise ValueError("tasks: every split is empty; set tasks.n_train, n_val, n_test "
                             "or n_ood ≥ 1")


# where a task's residual is enforced (metapinn.tasks.task_tensors, identify.collocation)
COLLOCATION = ("random", "observations", "both")


@dataclass(frozen=True)
class IdentifySettings:
    """``metapinn identify`` on a researcher's own observations (config node ``identify``).

    Args:
        seeds: one run per seed (scratch's network initialisation and each run's collocation
            and boundary points); the reported coefficients are the median over the runs,
            their spread (range and standard deviation) the uncertainty. That spread is the
            optimisation's variability only, not a posterior: it says how reproducible the
            fit is, not how much the noise of the data moves the answer.
        steps: Adam steps, replacing ``adapt.steps`` (the schedule of ``adapt`` applies).
        lbfgs_steps: L-BFGS iterations after them, replacing ``adapt.lbfgs_steps``.
        dtype: of the runs, replacing ``dtype``: L-BFGS's line search needs float64 to make
            progress near the optimum.
        collocation: where the residual is enforced: ``observations`` (at the observation
            points, as Raissi et al. 2019 do), ``random`` (``pde.n_collocation`` points drawn
            over the domain, as in evaluation), ``both``, or ``auto`` (the default):
            ``observations`` when there are at least ``pde.n_collocation`` of them (dense
            data), else ``both``. Random points inside a front narrower than the network
            resolves bias a viscosity upwards (measured on the Burgers shock case:
            docs/results.md); few observation points alone constrain the physics too little.
        residual_weight: λ_r of the runs, replacing ``pde.weights.residual``. ``null`` (the
            default): 0.1 × ``pde.weights.residual`` when the residual is enforced at the
            observation points alone (dense data), else ``pde.weights.residual``. With dense
            noisy data the family's weight pulled a viscosity towards smoothing the data
            (the Burgers shock case, the only family where this was measured: explored on
            one noise draw, checked on two others; docs/results.md).
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    steps: int = 1000
    lbfgs_steps: int = 4000
    dtype: str = "float64"
    collocation: str = "auto"
    residual_weight: float | None = None

    def __post_init__(self):
        if self.collocation not in ("auto", *COLLOCATION):
            raise ValueError(f"unknown identify.collocation {self.collocation!r}; valid "
                             f"choices: {', '.join(('auto', *COLLOCATION))}")
        if not self.seeds or min(self.seeds) < 0 or len(set(self.seeds)) < len(self.seeds):
            raise ValueError(f"identify.seeds must be distinct seeds ≥ 0, got "
                             f"{list(self.seeds)}")
        _at_least("identify", 0, steps=self.steps, lbfgs_steps=self.lbfgs_steps)
        if self.residual_weight is not None and not 0 < self.residual_weight < math.inf:
            raise ValueError(f"identify.residual_weight must be finite and > 0 (or null), "
                             f"got {self.residual_weight}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"unknown identify.dtype {self.dtype!r}; valid choices: "
                             f"float32, float64")
        if self.steps + self.lbfgs_steps < 1:
            raise ValueError("identify.steps + identify.lbfgs_steps must be ≥ 1")


CLASSICAL_METHODS = ("trf", "dogbox")
INTERPOLATIONS = ("linear", "cubic")


@dataclass(frozen=True)
class ClassicalSettings:
    """The ``classical`` baseline: ``scipy.optimize.least_squares`` over the coefficients,
    calling the family's reference solver (config node ``classical``;
    :mod:`metapinn.classical`).

    Args:
        max_evals: reference-solver evaluations per task, those of the finite-difference
            Jacobian included; the solve stops there.
        method: ``least_squares``'s bounded method, ``trf`` or ``dogbox``.
        xtol, ftol, gtol: ``least_squares``'s stopping tolerances.
        diff_step: relative finite-difference step in the coefficients' parametrisation.
            Not smaller: the solvers pick their steps (CDR's time step, Burgers' quadrature
            nodes) from the coefficients, so u jumps by ~1e-7 where a count changes.
        widen: the bounds are the prior's and the ood range's union, widened on each side by
            this fraction of its width, in the parametrisation (log for positive
            coefficients).
        interpolation: ``linear`` or ``cubic`` spline from the solver's grid to the
            observation points.
        grid: the solver's grid settings (as ``pde.grid``); empty: the tasks' grid.
        splits: the task splits solved by ``metapinn classical``.
    """

    max_evals: int = 200
    method: str = "trf"
    xtol: float = 1e-8
    ftol: float = 1e-8
    gtol: float = 1e-8
    diff_step: float = 1e-4
    widen: float = 0.25
    interpolation: str = "cubic"
    grid: dict[str, int] = field(default_factory=dict)
    splits: list[str] = field(default_factory=lambda: ["test"])

    def __post_init__(self):
        _at_least("classical", 1, max_evals=self.max_evals)
        _positive("classical", xtol=self.xtol, ftol=self.ftol, gtol=self.gtol,
                  diff_step=self.diff_step)
        if not self.diff_step < 1:
            raise ValueError(f"classical.diff_step must be < 1 (a relative step), got "
                             f"{self.diff_step}")
        if not self.widen >= 0:
            raise ValueError(f"classical.widen must be ≥ 0, got {self.widen}")
        if self.method not in CLASSICAL_METHODS:
            raise ValueError(f"unknown classical.method {self.method!r}; valid choices: "
                             f"{', '.join(CLASSICAL_METHODS)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown classical.interpolation {self.interpolation!r}; valid "
                             f"choices: {', '.join(INTERPOLATIONS)}")
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not self.splits:
            raise ValueError(f"classical.splits {list(self.splits)}: each must be one of "
                             f"{', '.join(SPLITS)}")


@dataclass(frozen=True)
class ExperimentSettings:
    """What the pipeline runs (config group ``experiment/``).

    Args:
        name: the experiment; outputs go to ``results/<name>/``.
        pdes, methods, seeds: the families, methods and seeds of the DAG.
        splits: the held-out splits every method is evaluated on.
        lr_grid: candidate adaptation learning rates (tuned for scratch on ``val``).
        pde_overrides: per family, settings of ``pde`` (e.g. thresholds).
        method_overrides: per method, settings of ``method`` (e.g. budgets).
        meta_budget: meta-training compute of every method with an outer loop, in
            task-loss gradient evaluations per (family, method, seed); each method's
            ``outer_steps`` is derived from it (:meth:`MethodSettings.for_budget`, applied
            by :func:`metapinn.config.compose`; ``outer_steps`` in ``method_overrides`` is
            then refused, ``method.outer_steps=`` on the command line still wins).
            ``None``: the methods' own ``outer_steps``.
        second_order_cost: the cost of one backward pass through an inner loop (MAML, the
            hypernetwork) per inner step, in first-order gradient evaluations. The default
            is what ``benchmarks/meta_cost.py`` measured for the quick sizes on a 2-core CPU
            (median 2.25 over families and methods, range 2.0–3.1).
        budget_scales: multiples of ``meta_budget`` at which ``budget_methods`` are also
            meta-trained and evaluated (the compute figure); ``[1]``: none besides the main
            run.
        budget_methods: the methods of the compute figure.
        own_lr: also tune every method's own adaptation rate on ``val`` (same grid and
            rule as scratch's) and tabulate the speedups at those rates
            (``tables/speedup_own_lr.*``).
        own_lr_methods: the methods of that table (``null``: every method but scratch).
        classical: also run the ``classical`` baseline (solver in the loop) on every
            family's ``classical.splits`` tasks (``classical/<pde>.nc``).
    """

    name: str = "default"
    pdes: list[str] = field(default_factory=lambda: ["burgers", "cdr", "darcy"])
    methods: list[str] = field(default_factory=lambda: ["scratch"])
    seeds: list[int] = field(default_factory=lambda: [0])
    splits: list[str] = field(default_factory=lambda: ["test"])
    lr_grid: list[float] = field(default_factory=lambda: [0.001, 0.002, 0.005])
    pde_overrides: dict[str, Any] = field(default_factory=dict)
    method_overrides: dict[str, Any] = field(default_factory=dict)
    meta_budget: int | None = None
    second_order_cost: float = 2.25
    budget_scales: list[float] = field(default_factory=lambda: [1.0])
    budget_methods: list[str] = field(
        default_factory=lambda: ["maml", "reptile", "leap", "hypernet"])
    own_lr: bool = False
    own_lr_methods: list[str] | None = None
    classical: bool = False

    def __post_init__(self):
        if self.meta_budget is not None and self.meta_budget < 1:
            raise ValueError(f"experiment.meta_budget must be ≥ 1 gradient evaluation (or "
                             f"null), got {self.meta_budget}")
        if self.second_order_cost < 1:
            raise ValueError(f"experiment.second_order_cost must be ≥ 1 (a second-order "
                             f"backward costs at least a first-order one), got "
                             f"{self.second_order_cost}")
        if not self.budget_scales or min(self.budget_scales) <= 0 \
                or 1.0 not in [float(x) for x in self.budget_scales]:
            raise ValueError(f"experiment.budget_scales must be positive and include 1 (the "
                             f"main run), got {list(self.budget_scales)}")
        if len(self.budget_scales) > 1 and self.meta_budget is None:
            raise ValueError("experiment.budget_scales scales experiment.meta_budget, which "
                             "is unset; set experiment.meta_budget or budget_scales: [1]")
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not self.splits:
            raise ValueError(f"experiment.splits {list(self.splits)}: each must be one of "
                             f"{', '.join(SPLITS)}")
        if not self.lr_grid or min(self.lr_grid) <= 0:
            raise ValueError(f"experiment.lr_grid must be non-empty and positive, "
                             f"got {list(self.lr_grid)}")
        if not self.seeds or min(self.seeds) < 0:
            raise ValueError(f"experiment.seeds must be non-empty and ≥ 0, "
                             f"got {list(self.seeds)}")


@dataclass(frozen=True)
class MethodSettings:
    """Meta-training settings every method shares (config group ``method/``); a method
    with settings of its own subclasses this in its module.

    Args:
        name: registry name of the method.
        outer_steps: outer (meta) optimiser steps.
        outer_lr: Adam learning rate of the outer loop.
        meta_batch: tasks per outer step.
        inner_steps: inner steps on the support loss (k − 1 in the MAML notation).
        inner_lr: inner learning rate α.
        inner_optimizer: ``sgd`` or ``adam`` (MAML's exact gradient assumes ``sgd``).
        vmap: batch the meta-batch's tasks with ``torch.func.vmap`` (else a per-task loop).
            Reptile and the hypernetwork (without inner steps) run a per-task loop on a CPU
            where the job compiles its graph-free steps
            (``metapinn.meta.base.compiles_inner``): the compiled runs are faster there.
        val_every: validation interval (post-adaptation loss on ``val`` tasks).
        checkpoint_every: checkpoint interval in outer steps.
    """

    name: str = MISSING
    outer_steps: int = 200
    outer_lr: float = 1e-3
    meta_batch: int = 4
    inner_steps: int = 5
    inner_lr: float = 1e-3
    inner_optimizer: str = "sgd"
    vmap: bool = True
    val_every: int = 50
    checkpoint_every: int = 50

    def gradient_evals_per_task(self, second_order_cost: float) -> float | None:
        """Task-loss gradient evaluations one outer step spends on each task of the
        meta-batch, with a backward pass through the inner loop counted at
        ``second_order_cost`` first-order ones; ``None``: the method has no outer loop that
        a meta-training budget (``experiment.meta_budget``) could size. Methods with an
        outer loop override this in their settings class."""
        return None

    def at_tuned_rate(self, lr: float) -> MethodSettings:
        """These settings for a baseline trained at the tuned adaptation rate ``lr`` (see
        ``metapinn.meta.TUNED_RATE_METHODS``); unchanged where the rate is not a setting of
        the method (transfer's solve reads ``adapt.lr``)."""
        return self

    def adapt_settings(self, adapt: AdaptSettings) -> AdaptSettings:
        """The evaluation's inner loop for this method's initialisations: ``adapt``
        unchanged, except for a baseline whose optimiser is part of what it is
        (``scratch_lbfgs``)."""
        return adapt

    def gradient_evals_per_step(self, second_order_cost: float) -> float | None:
        """Task-loss gradient evaluations of one outer step (its whole meta-batch)."""
        per_task = self.gradient_evals_per_task(second_order_cost)
        return None if per_task is None else self.meta_batch * per_task

    def for_budget(self, budget: float, second_order_cost: float,
                   eval_steps: int) -> MethodSettings:
        """These settings with as many outer steps as ``budget`` gradient evaluations buy
        (rounded down, at least one); unchanged for a method without an outer loop.
        ``eval_steps`` (``adapt.steps``) is for baselines that must train at least as long
        as an evaluation solve."""
        per_step = self.gradient_evals_per_step(second_order_cost)
        if per_step is None:
            return self
        return replace(self, outer_steps=max(1, math.floor(budget / per_step + 1e-9)))

    def __post_init__(self):
        _at_least("method", 0, outer_steps=self.outer_steps, inner_steps=self.inner_steps)
        _at_least("method", 1, meta_batch=self.meta_batch, val_every=self.val_every,
                  checkpoint_every=self.checkpoint_every)
        _positive("method", outer_lr=self.outer_lr, inner_lr=self.inner_lr)
        if self.inner_optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown method.inner_optimizer {self.inner_optimizer!r}; "
                             f"valid choices: {', '.join(OPTIMIZERS)}")

    @property
    def inner(self) -> AdaptSettings:
        """The inner loop of meta-training: constant rate, all parameters alike."""
        return AdaptSettings(steps=self.inner_steps, lr=self.inner_lr, lr_decay=1.0,
                             optimizer=self.inner_optimizer, lbfgs_steps=0,
                             log_every=max(self.inner_steps, 1), coef_lr_factor=1.0,
                             compile=False)


@dataclass
class Config:
    """The whole configuration (``config/config.yaml`` composes its groups into this).

    One entry per key below: ``metapinn <command> --help`` shows these descriptions for the
    keys the command reads.

    Args:
        seed: solver seed (network initialisation and collocation points).
        task: the task to solve or export (its index; with ``tasks_file``, a task of that
            file).
        coefficients: fix the task's true coefficients, e.g. ``{nu:0.02}`` (empty: draw
            them); quote it in the shell.
        tasks_file: a tasks file (``generate-tasks``; default: the experiment's
            ``tasks/<pde>.nc``).
        observations: an observation file (``export-observations``, or your own data).
        init: an ``init.pt`` written by ``meta-train``: the initialisation to adapt from.
        lr_file: a tuning file (``tune-lr``): adapt at its ``best_lr``, with its validation
            thresholds where ``pde.threshold`` is unset.
        threshold_file: the tuning file whose validation thresholds are used (default:
            ``lr_file``).
        out: the output file (default: its place under ``results/<experiment>/``, where
            the command has one).
        out_dir: the output folder of ``meta-train`` (``init.pt``, ``history.nc``).
        dtype: ``float32`` or ``float64``.
        device: ``cpu``, ``cuda[:N]`` or ``auto``.
        threads: the threads of a command: torch's, and those of the BLAS and OpenMP
            libraries NumPy and SciPy use, for the command's duration (0: the libraries'
            defaults, one per core).
        results_dir: where ``results/<experiment>/`` lives.
        resume: meta-train: continue from the checkpoint if it fits this configuration.
        budget_scale: this multiple of ``experiment.meta_budget`` (the compute figure's
            runs; 1: the main run): meta-train trains with it, adapt-tasks records it.
        identify: the runs of ``metapinn identify`` (:class:`IdentifySettings`).
        classical: the ``classical`` baseline's solve (:class:`ClassicalSettings`).
    """

    seed: int = 0
    task: int = 0
    coefficients: dict[str, float] = field(default_factory=dict)
    tasks_file: str | None = None
    observations: str | None = None
    init: str | None = None
    lr_file: str | None = None
    threshold_file: str | None = None
    out: str | None = None
    out_dir: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    threads: int = 0
    results_dir: str = "results"
    resume: bool = False
    budget_scale: float = 1.0
    identify: IdentifySettings = field(default_factory=IdentifySettings)
    classical: ClassicalSettings = field(default_factory=ClassicalSettings)
    tasks: TaskSplits = field(default_factory=TaskSplits)
    pde: PDESettings = field(default_factory=PDESettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    adapt: AdaptSettings = field(default_factory=AdaptSettings)
    method: Any = MISSING
    experiment: ExperimentSettings = field(default_factory=ExperimentSettings)
