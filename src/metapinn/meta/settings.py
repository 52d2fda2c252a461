"""The methods' own settings (each a :class:`metapinn.settings.MethodSettings` subclass,
the schema of its ``config/method/<name>.yaml``), kept apart from the methods' torch code
so that reading a configuration (e.g. every Snakefile parse) imports no torch. A method
module imports its class from here; the registry (:mod:`metapinn.meta`) names it."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..settings import MethodSettings


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
