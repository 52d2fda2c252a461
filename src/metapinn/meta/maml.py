"""MAML (Finn et al., 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks") and first-order MAML, on the shared inner loop.

For one task with support losses L_1..L_{k−1} and query loss L_k, the exact meta-gradient
through k − 1 inner SGD steps is (docs/design.md §2.4)

    g_MAML = d/dφ_1 L_k(φ_k) = ∏_{j=1}^{k−1} (I − α L_j''(φ_j)) · L_k'(φ_k),

obtained here by differentiating :func:`metapinn.adapt.adapt` (run with
``differentiable=True``) with ``torch.func.grad``. First-order MAML drops the Jacobian:
g_FO = L_k'(φ_k).
"""

from __future__ import annotations

import torch
from torch.func import grad_and_value

from ..loss import TaskData
from ..nets import Params
from .base import Context, InitialisationMethod, MetaTask, batch_mean_grad
from .settings import MamlSettings


def post_adaptation_loss(ctx: Context, init: Params, support: TaskData,
                         query: TaskData) -> torch.Tensor:
    """L_k(φ_k): the query loss after the inner steps on the support loss (graph kept);
    without inner steps the query loss at ``init`` itself (a plain function, which
    ``torch.compile`` can trace)."""
    adapted = ctx.inner_adapt(init, support) if ctx.ms.inner_steps else init
    return ctx.loss(adapted, query)


def maml_task_grad(ctx: Context, phi: Params, support: TaskData, query: TaskData,
                   first_order: bool) -> tuple[Params, torch.Tensor]:
    """(meta-gradient, post-adaptation query loss) of one task."""
    if first_order:
        adapted = {k: v.detach() for k, v in ctx.inner_adapt(phi, support).items()}
        g, loss = grad_and_value(ctx.loss)(adapted, query)
        return g, loss
    g, loss = grad_and_value(lambda p: post_adaptation_loss(ctx, p, support, query))(phi)
    return g, loss


class MAML(InitialisationMethod):
    """Second-order MAML; ``first_order=True`` in the settings (or ``fomaml``) gives FOMAML."""

    name = "maml"
    settings = MamlSettings

    def __init__(self, first_order: bool | None = None):
        self.force_first_order = first_order

    def first_order(self, ctx: Context) -> bool:
        if self.force_first_order is not None:
            return self.force_first_order
        return ctx.ms.first_order

    def meta_grad(self, meta: Params, batch: list[MetaTask], ctx: Context):
        fo = self.first_order(ctx)
        return batch_mean_grad(lambda p, s, q: maml_task_grad(ctx, p, s, q, fo), meta, batch,
                               ctx.ms.vmap)


class FOMAML(MAML):
    name = "fomaml"

    def __init__(self):
        super().__init__(first_order=True)
