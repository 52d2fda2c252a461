"""Meta-SGD (Li et al., 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot
Learning"): MAML that also learns, for every element of the PINN's parameters (network
weights and the coefficient guess alike), a multiplier of the inner loop's step.

The meta-parameters are the initialisation φ and log-multipliers s (one tensor of each
parameter's shape, ``log_rate:<name>``, starting at 0, i.e. multiplier 1). A task's inner
loop is the shared :func:`metapinn.adapt.adapt` with ``lr_scale = exp(s)``: element ``i``
moves by ``lr × coef_lr_factor × exp(s_i)`` times its optimiser direction (SGD's gradient,
or Adam's normalised moment, as evaluation runs it). The meta-gradient of the query loss
after the inner steps, with respect to φ and s, is the exact second-order one (as MAML's,
:func:`torch.func.grad` through the inner loop); a first-order version would give s no
gradient at all, so there is none.

At adaptation the learned multipliers scale the evaluation's steps (``init.pt`` holds
them; :func:`metapinn.meta.base.load_init` hands them to the inner loop). So that they mean
the same there as in meta-training, the inner loop runs at the tuned adaptation rate
(``metapinn.meta.TUNED_RATE_METHODS``) with the evaluation's coefficient factor.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch.func import grad_and_value

from ..loss import TaskData
from ..nets import Params, scratch_params
from ..settings import AdaptSettings
from .base import Context, InitialisationMethod, MetaTask, batch_mean_grad, params_like
from .settings import MetaSgdSettings

PREFIX = "log_rate:"


def split(meta: Params) -> tuple[Params, Params]:
    """(φ, s): the initialisation and the log-multipliers of a Meta-SGD meta-dict."""
    phi = {k: v for k, v in meta.items() if not k.startswith(PREFIX)}
    return phi, {k: meta[PREFIX + k] for k in phi}


def inner_settings(ctx: Context) -> AdaptSettings:
    """The inner loop of meta-training, with the evaluation's coefficient factor (the
    multipliers are learned relative to the step rule they will scale)."""
    return replace(ctx.inner_settings, coef_lr_factor=ctx.rc.adapt.coef_lr_factor)


def metasgd_task_grad(ctx: Context, meta: Params, support: TaskData,
                      query: TaskData) -> tuple[Params, torch.Tensor]:
    """(meta-gradient over φ and s, post-adaptation query loss) of one task."""
    settings = inner_settings(ctx)

    def post_adaptation_loss(m: Params) -> torch.Tensor:
        phi, log_rate = split(m)
        scale = {k: v.exp() for k, v in log_rate.items()}
        return ctx.loss(ctx.inner_adapt(phi, support, settings=settings, lr_scale=scale),
                        query)

    return grad_and_value(post_adaptation_loss)(meta)


class MetaSGD(InitialisationMethod):
    """MAML with a learned step multiplier per parameter element."""

    name = "metasgd"
    settings = MetaSgdSettings

    def init_meta(self, ctx: Context) -> Params:
        phi = scratch_params(ctx.rc, ctx.seed)
        return {**phi, **{PREFIX + k: torch.zeros_like(v) for k, v in phi.items()}}

    def initialisation(self, meta: Params, data: TaskData, ctx: Context) -> Params:
        return params_like(split(meta)[0])

    def lr_scale(self, meta: Params, ctx: Context) -> Params:
        """The learned multipliers exp(s), for the evaluation's inner loop."""
        return {k: v.detach().exp() for k, v in split(meta)[1].items()}

    def meta_grad(self, meta: Params, batch: list[MetaTask], ctx: Context):
        return batch_mean_grad(lambda m, s, q: metasgd_task_grad(ctx, m, s, q), meta, batch,
                               ctx.ms.vmap)
