"""Baselines without an outer loop: ``scratch`` (Glorot network, prior-centre coefficients)
and ``transfer`` (the fully trained PINN of the training task nearest the prior's centre)."""

from __future__ import annotations

import numpy as np

from ..adapt import AdaptSettings
from ..loss import TaskData
from ..nets import Params
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


class Scratch:
    name = "scratch"
    trainable = False

    def fit(self, ctx: Context) -> Params:
        from ..evaluate import scratch_params

        return scratch_params(ctx.rc, ctx.seed)

    def initialisation(self, meta: Params, data: TaskData, ctx: Context) -> Params:
        return params_like(meta)


class Transfer(Scratch):
    name = "transfer"

    def fit(self, ctx: Context) -> Params:
        from ..evaluate import scratch_params

        mt = ctx.train[nearest_to_centre(ctx)]
        settings = AdaptSettings(**{**ctx.rc.adapt.__dict__, "steps": ctx.ms.transfer_steps,
                                    "lbfgs_steps": 0})
        return ctx.inner_adapt(scratch_params(ctx.rc, ctx.seed), mt.full, functional=False,
                               settings=settings)
