"""Baseline ``pretrain``: one network trained jointly on all training tasks, each task with
its own coefficient parameter (multi-task pre-training). The initialisation is the network
and the mean of the learned coefficient parameters."""

from __future__ import annotations

import torch

from ..loss import TaskData
from ..nets import Params, scratch_params
from .base import Context, MetaTask
from .settings import PretrainSettings


class Pretrain:
    name = "pretrain"
    trainable = True
    settings = PretrainSettings

    def init_meta(self, ctx: Context) -> Params:
        meta = scratch_params(ctx.rc, ctx.seed)
        meta["coef_tasks"] = meta.pop("coef")[None].repeat(len(ctx.train), 1)
        return meta

    def meta_grad(self, meta: Params, batch: list[MetaTask], ctx: Context):
        rows = {mt.task.index: r for r, mt in enumerate(ctx.train)}

        def joint_loss(m):
            net = {k: v for k, v in m.items() if k != "coef_tasks"}
            losses = [ctx.loss(dict(net, coef=m["coef_tasks"][rows[mt.task.index]]), mt.full)
                      for mt in batch]
            return torch.stack(losses).mean()

        g, loss = torch.func.grad_and_value(joint_loss)(meta)
        return g, loss

    def initialisation(self, meta: Params, data: TaskData, ctx: Context) -> Params:
        params = {k: v.detach().clone() for k, v in meta.items() if k != "coef_tasks"}
        params["coef"] = meta["coef_tasks"].detach().mean(0)
        return params
