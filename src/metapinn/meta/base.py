"""What every meta-learning method shares: settings, the meta-task data, the context.

A method is a small object with four pure functions over parameter dicts:

* ``init_meta(ctx)`` — the meta-parameters to train (for most methods the PINN
  initialisation φ itself, network and coefficient guess);
* ``meta_grad(meta, batch, ctx)`` — (meta-loss, gradient-like direction) for one meta-batch,
  handed to the outer optimiser of :mod:`metapinn.metatrain`;
* ``initialisation(meta, task_data, ctx)`` — the PINN parameters a new task is adapted
  from (the hypernetwork reads the task's observations here; the others return φ);
* ``fit(ctx)`` — for methods without an outer loop (scratch, transfer) the meta-parameters
  directly.

The inner loop is always :func:`metapinn.adapt.adapt`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.func import vmap

from ..adapt import AdaptSettings, adapt
from ..config import RunConfig
from ..loss import TaskData, loss_parts
from ..nets import Params
from ..tasks import Task, rng_for, task_tensors

STREAM_QUERY = 2  # collocation points of the query loss (independent of the support's)
STREAM_OBS_SPLIT = 3  # which observations go to support and which to query


@dataclass(frozen=True)
class MetaSettings:
    """Settings of meta-training (config group ``method/``).

    Args:
        name: registry name of the method.
        outer_steps: outer (meta) optimiser steps.
        outer_lr: Adam learning rate of the outer loop.
        meta_batch: tasks per outer step.
        inner_steps: inner steps on the support loss (k − 1 in DESIGN §4.3).
        inner_lr: inner learning rate α.
        inner_optimizer: ``sgd`` or ``adam`` (MAML's exact gradient assumes ``sgd``).
        first_order: MAML only — drop the Jacobian of the inner loop (FOMAML).
        vmap: batch the meta-batch's tasks with ``torch.func.vmap`` (else a per-task loop).
        val_every: validation interval (post-adaptation loss on ``val`` tasks).
        checkpoint_every: checkpoint interval in outer steps.
        leap_norm, leap_loss_term, leap_stabilise: LEAP's d1 (length) vs d2 (energy), the
            loss coordinate of the path, and Δf ← −|Δf|.
        hyper_latent, hyper_width: hypernetwork encoder latent size and hidden width.
        transfer_steps: optimiser steps of the transfer baseline's training-task solve.
    """

    name: str = "maml"
    outer_steps: int = 200
    outer_lr: float = 1e-3
    meta_batch: int = 4
    inner_steps: int = 5
    inner_lr: float = 1e-3
    inner_optimizer: str = "sgd"
    first_order: bool = False
    vmap: bool = True
    val_every: int = 50
    checkpoint_every: int = 50
    leap_norm: bool = True
    leap_loss_term: bool = True
    leap_stabilise: bool = True
    hyper_latent: int = 32
    hyper_width: int = 64
    transfer_steps: int = 2000

    def __post_init__(self):
        for key in ("outer_steps", "inner_steps"):
            if getattr(self, key) < 0:
                raise ValueError(f"method.{key} must be ≥ 0, got {getattr(self, key)}")
        for key in ("meta_batch", "val_every", "checkpoint_every", "hyper_latent",
                    "hyper_width", "transfer_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"method.{key} must be ≥ 1, got {getattr(self, key)}")
        if self.outer_lr <= 0 or self.inner_lr <= 0:
            raise ValueError(f"method.outer_lr and method.inner_lr must be > 0, "
                             f"got {self.outer_lr}, {self.inner_lr}")
        if self.inner_optimizer not in ("sgd", "adam"):
            raise ValueError(f"unknown method.inner_optimizer {self.inner_optimizer!r}; "
                             f"valid choices: sgd, adam")

    @property
    def inner(self) -> AdaptSettings:
        return AdaptSettings(steps=self.inner_steps, lr=self.inner_lr,
                             optimizer=self.inner_optimizer, log_every=max(self.inner_steps, 1))


@dataclass
class MetaTask:
    """A training task's support and query data (same shapes for every task)."""

    task: Task
    support: TaskData
    query: TaskData
    full: TaskData  # all observations, support collocation points (test-time loss)


@dataclass
class Context:
    """What a method needs besides its parameters: the run, the settings, the tasks."""

    rc: RunConfig
    ms: MetaSettings
    seed: int
    train: list[MetaTask] = field(default_factory=list)
    val: list[MetaTask] = field(default_factory=list)

    def loss(self, params: Params, data: TaskData) -> torch.Tensor:
        return loss_parts(params, data, self.rc.pde, self.rc.weights)["total"]

    def parts(self, params: Params, data: TaskData) -> dict[str, torch.Tensor]:
        return loss_parts(params, data, self.rc.pde, self.rc.weights)

    @property
    def inner(self) -> AdaptSettings:
        """The inner loop of meta-training. Plain SGD steps are not scale-invariant, so
        their learning rate is divided by the family's loss scale (``pde.loss_scale``)."""
        inner = self.ms.inner
        if inner.optimizer == "sgd" and self.rc.loss_scale != 1.0:
            inner = replace(inner, lr=inner.lr / self.rc.loss_scale)
        return inner

    def inner_adapt(self, params: Params, data: TaskData, functional: bool = True,
                    settings: AdaptSettings | None = None) -> Params:
        """k inner steps on ``data`` with the shared inner loop (graph kept if functional)."""
        return adapt(params, lambda p: self.parts(p, data), settings or self.inner,
                     differentiable=functional, record_log=False).params


def meta_task(rc: RunConfig, task: Task, seed: int) -> MetaTask:
    """Support/query split of one task: disjoint halves of the observations and two
    independent sets of collocation/boundary points."""
    full = task_tensors(rc.pde, task, rc.n_collocation, rc.n_boundary, seed, rc.dtype,
                        rc.device)
    n = len(task.obs_values)
    if n < 2:
        raise ValueError("meta-training needs ≥ 2 observations per task (support and query)")
    perm = rng_for(seed, task.index, STREAM_OBS_SPLIT).permutation(n)
    half = n // 2
    s_idx = torch.as_tensor(np.sort(perm[:half]), device=rc.device)
    q_idx = torch.as_tensor(np.sort(perm[half:2 * half]), device=rc.device)
    query_pts = task_tensors(rc.pde, task, rc.n_collocation, rc.n_boundary, seed, rc.dtype,
                             rc.device, stream=STREAM_QUERY)
    support = dict(full, obs_points=full["obs_points"][s_idx],
                   obs_values=full["obs_values"][s_idx])
    query = dict(query_pts, obs_points=full["obs_points"][q_idx],
                 obs_values=full["obs_values"][q_idx])
    return MetaTask(task, support, query, full)


def stack(datas: list[TaskData]) -> TaskData:
    """Stack task dicts along a new leading dim (for vmap)."""
    return {k: torch.stack([d[k] for d in datas]) for k in datas[0]}


def params_like(params: Params) -> Params:
    return {k: v.detach().clone() for k, v in params.items()}


def batch_mean_grad(task_grad, meta: Params, batch: list[MetaTask], use_vmap: bool):
    """Mean over the meta-batch of ``task_grad(meta, support, query) -> (grads, loss)``;
    with ``vmap`` over stacked task data or as a plain per-task loop (the reference)."""
    if use_vmap:
        grads, losses = vmap(task_grad, in_dims=(None, 0, 0))(
            meta, stack([t.support for t in batch]), stack([t.query for t in batch]))
        return {k: v.mean(0) for k, v in grads.items()}, losses.mean()
    total, losses = None, []
    for t in batch:
        g, loss = task_grad(meta, t.support, t.query)
        total = g if total is None else {k: total[k] + g[k] for k in g}
        losses.append(loss)
    return {k: v / len(batch) for k, v in total.items()}, torch.stack(losses).mean()


class InitialisationMethod:
    """A method that learns one initialisation φ (network + coefficient guess) for every
    task: starts from the scratch initialisation, and hands φ itself to each new task."""

    trainable = True

    def init_meta(self, ctx: Context) -> Params:
        from ..evaluate import scratch_params

        return scratch_params(ctx.rc, ctx.seed)

    def initialisation(self, meta: Params, data: TaskData, ctx: Context) -> Params:
        return params_like(meta)
