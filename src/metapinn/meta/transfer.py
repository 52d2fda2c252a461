"""Baselines without an outer loop: ``scratch`` (Glorot network, prior-centre coefficients)
and ``transfer`` (the fully trained PINN of the training task nearest the prior's centre)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..loss import TaskData
from ..nets import Params, scratch_params
from ..settings import MethodSettings
from .base import Context, params_like


def nearest_to_centre(ctx: Context) -> int:
    """Index into ``ctx.train`` of the task whose coefficients are nearest the prior centre
    (distance in the PINN's parametrisation, scaled by the prior's width)."""
    pde = ctx.rc.pde
    lo = pde.to_param(np.array([c.low for c in pde.coefficients]))
    hi = pde.to_param(np.array([c.high for c in pde.coefficients]))
    centre = pde.to_param(pde.prior_centre())
    d = [np.linalg.norm((pde.to_param(mt.task.coefficients) - centre) / (hi - lo))
         for mt in ctx.train]
    return int(np.argmin(d))


@dataclass(frozen=True)
class TransferSettings(MethodSettings):
    """The transfer baseline's settings: optimiser steps of its training-task solve."""

    transfer_steps: int = 2000

    def __post_init__(self):
        super().__post_init__()
        if self.transfer_steps < 1:
            raise ValueError(f"method.transfer_steps must be ≥ 1, got {self.transfer_steps}")


class Scratch:
    name = "scratch"
    trainable = False
    settings = MethodSettings

    def fit(self, ctx: Context) -> Params:
        return scratch_params(ctx.rc, ctx.seed)

    def initialisation(self, meta: Params, data: TaskData, ctx: Context) -> Params:
        return params_like(meta)


class Transfer(Scratch):
    name = "transfer"
    settings = TransferSettings

    def fit(self, ctx: Context) -> Params:
        mt = ctx.train[nearest_to_centre(ctx)]
        settings = replace(ctx.rc.adapt, steps=ctx.ms.transfer_steps, lbfgs_steps=0)
        return ctx.inner_adapt(scratch_params(ctx.rc, ctx.seed), mt.full, functional=False,
                               settings=settings)
