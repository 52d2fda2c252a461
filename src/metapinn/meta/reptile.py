"""Reptile (Nichol, Achiam & Schulman, 2018, "On First-Order Meta-Learning Algorithms").

Run k inner steps from φ with any inner optimiser and move φ towards the result; as a
gradient for the outer optimiser:

    g_R = (φ_1 − φ_{k+1}) / α = Σ_i g_i   (exactly, for SGD with learning rate α).
"""

from __future__ import annotations

from ..loss import TaskData
from ..nets import Params
from .base import Context, InitialisationMethod, MetaTask, batch_mean_grad
from .settings import ReptileSettings


def reptile_task_grad(ctx: Context, phi: Params, support: TaskData, query: TaskData,
                      functional: bool = True):
    """(φ − φ_after_k_steps)/α on the task's support loss, and the query loss there.
    ``functional``: the inner run as ``torch.func`` code, as under ``vmap``; otherwise a
    plain run (the compiled step where ``ctx.compile_inner``). Nothing flows through it
    either way."""
    adapted = ctx.inner_adapt({k: v.detach() for k, v in phi.items()}, support, functional)
    alpha = ctx.inner_settings.lr
    g = {k: (phi[k] - adapted[k]).detach() / alpha for k in phi}
    return g, ctx.loss(adapted, query).detach()


class Reptile(InitialisationMethod):
    name = "reptile"
    settings = ReptileSettings

    def graph_free_evals(self, ms) -> float:
        """Graph-free evaluations per task and outer step: the inner steps."""
        return float(ms.inner_steps)

    def meta_grad(self, meta: Params, batch: list[MetaTask], ctx: Context):
        use_vmap = ctx.vmap_graph_free
        return batch_mean_grad(lambda p, s, q: reptile_task_grad(ctx, p, s, q, use_vmap), meta,
                               batch, use_vmap)
