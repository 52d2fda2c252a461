"""Baselines without an outer loop: ``scratch`` (Glorot network, prior-centre coefficients),
``scratch_alt`` (the same from an independent network seed: the null row, whose speedup
over scratch is the noise floor), ``scratch_lbfgs`` (scratch adapted by Adam, then L-BFGS)
and ``transfer`` (the fully trained PINN of the training task nearest the prior's
centre)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..loss import TaskData
from ..nets import Params, scratch_params
from ..settings import MethodSettings
from .base import Context, params_like
from .settings import ScratchLbfgsSettings, TransferSettings


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
    # the initialisation is a function of the seed alone: no tasks, no init.pt needed
    # (metapinn.evaluate.initialiser makes it where no init= is given)
    from_seed = True
    settings = MethodSettings

    def fit(self, ctx: Context) -> Params:
        return scratch_params(ctx.rc, ctx.seed)

    def initialisation(self, meta: Params, data: TaskData, ctx: Context) -> Params:
        return params_like(meta)


ALT_SEED_OFFSET = 1_000_003  # scratch_alt's network seed: seed + this, never a scratch seed


class ScratchAlt(Scratch):
    """Scratch from a second, independent initialisation: tabulated like any method, its
    speedup over scratch shows how much two draws of the same starting point differ."""

    name = "scratch_alt"

    def fit(self, ctx: Context) -> Params:
        return scratch_params(ctx.rc, ALT_SEED_OFFSET + ctx.seed)


class ScratchLbfgs(Scratch):
    """Scratch's initialisation, adapted by Adam and then L-BFGS (its settings'
    ``adapt_settings``): what a stronger optimiser alone gives, against which a learned
    initialisation must pay."""

    name = "scratch_lbfgs"
    settings = ScratchLbfgsSettings


class Transfer(Scratch):
    name = "transfer"
    from_seed = False  # trained on a training task: its init.pt is needed
    settings = TransferSettings

    def fit(self, ctx: Context) -> Params:
        mt = ctx.train[nearest_to_centre(ctx)]
        settings = replace(ctx.rc.adapt, steps=ctx.ms.transfer_steps, lbfgs_steps=0)
        return ctx.inner_adapt(scratch_params(ctx.rc, ctx.seed), mt.full, functional=False,
                               settings=settings)
