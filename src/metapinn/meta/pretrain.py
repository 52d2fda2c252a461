"""Baseline ``pretrain``: one network trained jointly on all training tasks, each task with
its own coefficient parameter (multi-task pre-training). The initialisation is the network
and the mean of the learned coefficient parameters."""

from __future__ import annotations

import torch

from ..loss import TaskData
from ..nets import Params, scratch_params
from .base import Context, MetaTask
from .settings import PretrainSettings


def joint_loss(meta: Params, data: list[TaskData], rows: torch.Tensor, loss) -> torch.Tensor:
    """The mean over the batch of each task's loss (``loss(params, data)``) with the shared
    network and the task's own coefficient row ``meta["coef_tasks"][rows[i]]``."""
    net = {k: v for k, v in meta.items() if k != "coef_tasks"}
    coefs = meta["coef_tasks"][rows]
    return torch.stack([loss(dict(net, coef=coefs[i]), d) for i, d in enumerate(data)]).mean()


class Pretrain:
    name = "pretrain"
    trainable = True
    settings = PretrainSettings

    def graph_free_evals(self, ms) -> float:
        """Graph-free evaluations per task and outer step: the joint gradient."""
        return 1.0

    def init_meta(self, ctx: Context) -> Params:
        meta = scratch_params(ctx.rc, ctx.seed)
        meta["coef_tasks"] = meta.pop("coef")[None].repeat(len(ctx.train), 1)
        return meta

    def meta_grad(self, meta: Params, batch: list[MetaTask], ctx: Context):
        rows = {mt.task.index: r for r, mt in enumerate(ctx.train)}
        index = torch.tensor([rows[mt.task.index] for mt in batch], device=ctx.rc.device)
        # compiled in a long job: one graph, since the batch's rows are a tensor, not ints
        return ctx.call_compiled(torch.func.grad_and_value(joint_loss),
                                 {k: v.detach() for k, v in meta.items()},
                                 [mt.full for mt in batch], index, ctx.loss)

    def initialisation(self, meta: Params, data: TaskData, ctx: Context) -> Params:
        params = {k: v.detach().clone() for k, v in meta.items() if k != "coef_tasks"}
        params["coef"] = meta["coef_tasks"].detach().mean(0)
        return params
