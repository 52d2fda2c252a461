"""LEAP (Flennerhag, Moreno, Lawrence & Damianou, 2019, "Transferring Knowledge across
Learning Processes").

LEAP shortens the inner training path on the loss-augmented manifold γ^i = (θ^i, L(θ^i)).
Per inner step, with Δθ^i = θ^{i+1} − θ^i and Δf^i = L(θ^{i+1}) − L(θ^i), the increment
of the meta-gradient is

    (θ^i − θ^{i+1}) − Δf^i ∇L(θ^i)              (energy, d2)
    divided by ‖γ^{i+1} − γ^i‖                   (length, d1: ``leap_norm``)

with the stabiliser Δf^i ← −|Δf^i| (``leap_stabilise``); ``leap_loss_term=False`` drops the
loss coordinate. Nothing flows through the trajectory, so any inner optimiser and long
trajectories work. With the loss term and the norm off, the sum telescopes to θ^0 − θ^K:
α times Reptile's direction.
"""

from __future__ import annotations

import torch

from ..loss import TaskData
from ..nets import Params
from .base import Context, InitialisationMethod, MetaTask, batch_mean_grad
from .settings import LeapSettings


def leap_increments(trajectory, norm: bool, loss_term: bool, stabilise: bool) -> list[Params]:
    """The per-step meta-gradient increments of one trajectory (see module docstring)."""
    out = []
    for (theta, f, g), (theta_next, f_next, _) in zip(trajectory[:-1], trajectory[1:],
                                                      strict=True):
        df = f_next - f
        if stabilise:
            df = -df.abs()
        inc = {k: theta[k] - theta_next[k] for k in theta}
        if loss_term:
            inc = {k: inc[k] - df * g[k] for k in inc}
        if norm:
            sq = sum(((theta_next[k] - theta[k]) ** 2).sum() for k in theta)
            if loss_term:
                sq = sq + df ** 2
            inc = {k: v / torch.sqrt(sq).clamp_min(1e-30) for k, v in inc.items()}
        out.append(inc)
    return out


def leap_task_grad(ctx: Context, phi: Params, support: TaskData, query: TaskData):
    """LEAP's meta-gradient of one task (the sum of the increments) and the query loss."""
    ms = ctx.ms
    result = ctx.run_inner(phi, lambda p: ctx.parts(p, support), ctx.inner_settings,
                           keep_trajectory=True)
    incs = leap_increments(result.trajectory, ms.leap_norm, ms.leap_loss_term,
                           ms.leap_stabilise)
    g = {k: sum(inc[k] for inc in incs) for k in phi}
    with torch.no_grad():
        loss = ctx.loss(result.params, query)
    return g, loss


class LEAP(InitialisationMethod):
    name = "leap"
    settings = LeapSettings

    def graph_free_evals(self, ms) -> float:
        """Graph-free evaluations per task and outer step: the inner steps."""
        return float(ms.inner_steps)

    def meta_grad(self, meta: Params, batch: list[MetaTask], ctx: Context):
        # the trajectory is a plain (non-differentiable) inner run: always the per-task loop
        return batch_mean_grad(lambda p, s, q: leap_task_grad(ctx, p, s, q), meta, batch,
                               use_vmap=False)
