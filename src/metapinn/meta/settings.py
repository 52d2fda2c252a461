"""The methods' own settings (each a :class:`metapinn.settings.MethodSettings` subclass,
the schema of its ``config/method/<name>.yaml``), kept apart from the methods' torch code
so that reading a configuration (e.g. every Snakefile parse) imports no torch. A method
module imports its class from here; the registry (:mod:`metapinn.meta`) names it."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..settings import AdaptSettings, MethodSettings


@dataclass(frozen=True)
class TransferSettings(MethodSettings):
    """The transfer baseline's settings: optimiser steps of its training-task solve."""

    transfer_steps: int = 2000

    def for_budget(self, budget: float, second_order_cost: float,
                   eval_steps: int) -> TransferSettings:
        """No outer loop; under a meta-training budget its solve runs at least the
        evaluation budget (``adapt.steps``)."""
        return replace(self, transfer_steps=max(self.transfer_steps, eval_steps))

    def __post_init__(self):
        super().__post_init__()
        if self.transfer_steps < 1:
            raise ValueError(f"method.transfer_steps must be ≥ 1, got {self.transfer_steps}")


@dataclass(frozen=True)
class ScratchLbfgsSettings(MethodSettings):
    """Scratch adapted by Adam, then L-BFGS: ``lbfgs_fraction`` of the evaluation's steps
    (``adapt.steps``) become L-BFGS iterations, the rest stay Adam steps, so that the step
    grid is every method's."""

    lbfgs_fraction: float = 0.5

    def adapt_settings(self, adapt: AdaptSettings) -> AdaptSettings:
        total = adapt.total_steps
        n = round(self.lbfgs_fraction * total)
        return replace(adapt, steps=total - n, lbfgs_steps=n)

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.lbfgs_fraction <= 1:
            raise ValueError(f"method.lbfgs_fraction must lie in (0, 1], got "
                             f"{self.lbfgs_fraction}")


@dataclass(frozen=True)
class PretrainSettings(MethodSettings):
    """Multi-task pretraining: one gradient of each meta-batch task's loss per step."""

    def gradient_evals_per_task(self, second_order_cost: float) -> float:
        return 1.0

    def at_tuned_rate(self, lr: float) -> PretrainSettings:
        """Pretraining's Adam runs at the tuned rate."""
        return replace(self, outer_lr=lr)

    def for_budget(self, budget: float, second_order_cost: float,
                   eval_steps: int) -> PretrainSettings:
        """The budget's steps, and at least the evaluation budget (``adapt.steps``)."""
        ms = super().for_budget(budget, second_order_cost, eval_steps)
        return replace(ms, outer_steps=max(ms.outer_steps, eval_steps))


@dataclass(frozen=True)
class ConditionalSettings(MethodSettings):
    """The conditional PINN (θ as an input): one gradient of the physics loss per prior draw
    (one draw per meta-batch task) per step; ``theta_fit_steps`` L-BFGS iterations of the
    coefficient fit to a task's observations at hand-over (0: keep the prior centre)."""

    theta_fit_steps: int = 50

    def gradient_evals_per_task(self, second_order_cost: float) -> float:
        return 1.0

    def for_budget(self, budget: float, second_order_cost: float,
                   eval_steps: int) -> ConditionalSettings:
        """As pretraining: the budget's steps, and at least the evaluation budget."""
        ms = super().for_budget(budget, second_order_cost, eval_steps)
        return replace(ms, outer_steps=max(ms.outer_steps, eval_steps))

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.theta_fit_steps, bool) or not isinstance(self.theta_fit_steps, int) \
                or self.theta_fit_steps < 0:
            raise ValueError(f"method.theta_fit_steps must be an integer ≥ 0 (L-BFGS "
                             f"iterations of the coefficient fit; 0: the prior centre), got "
                             f"{self.theta_fit_steps!r}")


@dataclass(frozen=True)
class ReptileSettings(MethodSettings):
    """Reptile: k inner gradient steps per task (the query loss is only evaluated)."""

    def gradient_evals_per_task(self, second_order_cost: float) -> float:
        return float(self.inner_steps)


@dataclass(frozen=True)
class MamlSettings(MethodSettings):
    """MAML's settings; ``first_order`` drops the Jacobian of the inner loop (FOMAML)."""

    first_order: bool = False

    def gradient_evals_per_task(self, second_order_cost: float) -> float:
        """k inner gradients and the query gradient; second order, each counted at
        ``second_order_cost`` (the backward pass runs through all of them)."""
        return (self.inner_steps + 1) * (1.0 if self.first_order else second_order_cost)


@dataclass(frozen=True)
class MetaSgdSettings(MamlSettings):
    """Meta-SGD's settings: MAML's, always second order (the learned multipliers get their
    gradient only through the inner steps), with the inner loop at the tuned rate."""

    def at_tuned_rate(self, lr: float) -> MetaSgdSettings:
        """The inner loop runs at the tuned adaptation rate, so that the learned
        multipliers are relative to the rate evaluation uses."""
        return replace(self, inner_lr=lr)

    def __post_init__(self):
        super().__post_init__()
        if self.first_order:
            raise ValueError("method.first_order=true is not Meta-SGD: the learned rates get "
                             "their gradient only through the inner steps")
        if self.inner_steps < 1:
            raise ValueError(f"Meta-SGD needs method.inner_steps ≥ 1 to learn its rates, got "
                             f"{self.inner_steps}")


@dataclass(frozen=True)
class LeapSettings(MethodSettings):
    """LEAP's settings: ``leap_norm`` the length (d1) instead of the energy (d2),
    ``leap_loss_term`` the loss coordinate of the path, ``leap_stabilise`` Δf ← −|Δf|."""

    leap_norm: bool = True
    leap_loss_term: bool = True
    leap_stabilise: bool = True

    def gradient_evals_per_task(self, second_order_cost: float) -> float:
        """k inner gradients (the path's increments reuse them)."""
        return float(self.inner_steps)


@dataclass(frozen=True)
class HypernetSettings(MethodSettings):
    """The hypernetwork's settings: encoder latent size and hidden width."""

    hyper_latent: int = 32
    hyper_width: int = 64

    def gradient_evals_per_task(self, second_order_cost: float) -> float:
        """As MAML's: through the inner steps (second order) when there are any."""
        return (self.inner_steps + 1) * (second_order_cost if self.inner_steps else 1.0)

    def __post_init__(self):
        super().__post_init__()
        if min(self.hyper_latent, self.hyper_width) < 1:
            raise ValueError(f"method.hyper_latent and method.hyper_width must be ≥ 1, got "
                             f"{self.hyper_latent}, {self.hyper_width}")


@dataclass(frozen=True)
class ImamlSettings(MethodSettings):
    """Implicit MAML's settings: ``imaml_lambda`` the proximal strength λ of the inner
    problem L(φ) + λ/2 ‖φ − θ‖², in units of the family's ``pde.loss_scale`` (the λ used is
    ``imaml_lambda × loss_scale``), ``cg_steps`` the most conjugate-gradient iterations of
    the implicit-gradient solve (one Hessian-vector product each), ``cg_tol`` its
    relative-residual stop. ``vmap`` is ignored (a per-task loop; default off)."""

    vmap: bool = False
    imaml_lambda: float = 1.0
    cg_steps: int = 10
    cg_tol: float = 1e-4

    def gradient_evals_per_task(self, second_order_cost: float) -> float:
        """k inner gradients, the query gradient, and at most ``cg_steps`` Hessian-vector
        products, each counted as a second-order backward at ``second_order_cost``."""
        return self.inner_steps + 1 + self.cg_steps * second_order_cost

    def __post_init__(self):
        super().__post_init__()
        if not (self.imaml_lambda > 0 and math.isfinite(self.imaml_lambda)):
            raise ValueError(f"method.imaml_lambda must be a finite number > 0 (the proximal "
                             f"strength λ), got {self.imaml_lambda}")
        if self.cg_steps < 1:
            raise ValueError(f"method.cg_steps must be ≥ 1 (conjugate-gradient iterations), "
                             f"got {self.cg_steps}")
        if not self.cg_tol >= 0:
            raise ValueError(f"method.cg_tol must be ≥ 0 (relative residual; 0 runs all "
                             f"cg_steps), got {self.cg_tol}")
