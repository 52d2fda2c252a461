"""Hypernetwork initialisation for inverse problems (docs/design.md §2.4).

The unknown θ cannot be the hypernetwork's input, so a permutation-invariant encoder of the
task's observations {(x, t, u_obs)} (Deep Sets: Zaheer et al., 2017) gives a latent z, and
z gives (i) a FiLM modulation (Perez et al., 2018) γ_l, β_l of every hidden layer of a
shared base PINN and (ii) an initial estimate of the coefficient parameter. FiLM on the
pre-activation folds into the layer, W'_l = diag(γ_l) W_l, b'_l = γ_l ⊙ b_l + β_l, so the
initialisation is a plain parameter dict and test-time fine-tuning is the shared inner loop.

Meta-training minimises the query loss after the inner steps from that initialisation
(physics + data loss), end to end through the encoder, as MAML does for a fixed φ.
"""

from __future__ import annotations

import torch

from ..loss import TaskData
from ..nets import Params, init_mlp, n_layers, scratch_params
from .base import Context, MetaTask, batch_mean_grad
from .maml import post_adaptation_loss
from .settings import HypernetSettings

ENC, BASE = "enc.", "base."


def _encoder_mlp(prefix: str, widths, gen, dtype, device) -> Params:
    return {prefix + k: v for k, v in init_mlp(widths, gen, dtype, device).items()}


def _apply(params: Params, prefix: str, h: torch.Tensor) -> torch.Tensor:
    n = 0
    while f"{prefix}w{n}" in params:
        n += 1
    for i in range(n):
        h = h @ params[f"{prefix}w{i}"].T + params[f"{prefix}b{i}"]
        if i < n - 1:
            h = torch.tanh(h)
    return h


def hidden_sizes(meta: Params) -> list[int]:
    base = {k[len(BASE):]: v for k, v in meta.items() if k.startswith(BASE)}
    return [base[f"b{i}"].shape[0] for i in range(n_layers(base) - 1)]


def encode(meta: Params, data: TaskData, ctx: Context) -> torch.Tensor:
    """Latent z of a task from its observations (mean over points: permutation-invariant)."""
    pde = ctx.rc.pde
    pts = data["obs_points"]
    lo = torch.tensor([b[0] for b in pde.bounds], dtype=pts.dtype, device=pts.device)
    hi = torch.tensor([b[1] for b in pde.bounds], dtype=pts.dtype, device=pts.device)
    feats = torch.cat([2 * (pts - lo) / (hi - lo) - 1, data["obs_values"][:, None]], dim=1)
    pooled = torch.tanh(_apply(meta, ENC + "phi.", feats)).mean(0)
    return _apply(meta, ENC + "rho.", pooled)


def hyper_initialisation(meta: Params, data: TaskData, ctx: Context) -> Params:
    """The PINN parameters of a task: the base network with the FiLM modulation folded in."""
    z = encode(meta, data, ctx)
    sizes = hidden_sizes(meta)
    film = _apply(meta, ENC + "film.", torch.tanh(z))
    coef_shift = _apply(meta, ENC + "coef.", torch.tanh(z))
    params: Params = {}
    offset = 0
    for i in range(len(sizes) + 1):
        w, b = meta[f"{BASE}w{i}"], meta[f"{BASE}b{i}"]
        if i < len(sizes):
            n = sizes[i]
            gamma = 1.0 + film[offset:offset + n]
            beta = film[offset + n:offset + 2 * n]
            offset += 2 * n
            w, b = gamma[:, None] * w, gamma * b + beta
        params[f"w{i}"], params[f"b{i}"] = w, b
    params["coef"] = meta[BASE + "coef"] + coef_shift
    return params


class HyperNet:
    name = "hypernet"
    trainable = True
    settings = HypernetSettings

    def graph_free_evals(self, ms) -> float:
        """Graph-free evaluations per task and outer step: without inner steps, the
        gradient (with them, it runs through the inner loop)."""
        return 1.0 if ms.inner_steps == 0 else 0.0

    def init_meta(self, ctx: Context) -> Params:
        rc, ms = ctx.rc, ctx.ms
        base = {BASE + k: v for k, v in scratch_params(rc, ctx.seed).items()}
        gen = torch.Generator().manual_seed(104_729 + ctx.seed)
        w, z = ms.hyper_width, ms.hyper_latent
        meta = dict(base)
        meta.update(_encoder_mlp(ENC + "phi.", (3, w, w), gen, rc.dtype, rc.device))
        meta.update(_encoder_mlp(ENC + "rho.", (w, w, z), gen, rc.dtype, rc.device))
        n_film = 2 * sum(rc.hidden)
        n_coef = len(rc.pde.coefficients)
        # small heads: the initial hypernetwork is close to the unmodulated base PINN, and
        # every parameter already receives a gradient
        for name, n_out in (("film.", n_film), ("coef.", n_coef)):
            head = _encoder_mlp(f"{ENC}{name}", (z, n_out), gen, rc.dtype, rc.device)
            meta.update({k: 0.01 * v for k, v in head.items()})
        return meta

    def meta_grad(self, meta: Params, batch: list[MetaTask], ctx: Context):
        def task_grad(m, support, query):
            def objective(mm):
                return post_adaptation_loss(ctx, hyper_initialisation(mm, support, ctx),
                                            support, query)
            g, loss = torch.func.grad_and_value(objective)(m)
            return g, loss

        if ctx.compile_inner and ctx.ms.inner_steps == 0 and not ctx.vmap_graph_free:
            # without inner steps the gradient is first order: on a CPU each task's is one
            # compiled function, one task after another (on CUDA the eager vmap batches)
            return batch_mean_grad(lambda m, s, q: ctx.call_compiled(task_grad, m, s, q),
                                   {k: v.detach() for k, v in meta.items()}, batch,
                                   use_vmap=False)
        return batch_mean_grad(task_grad, meta, batch, ctx.ms.vmap)

    def initialisation(self, meta: Params, data: TaskData, ctx: Context) -> Params:
        with torch.no_grad():
            return {k: v.detach() for k, v in hyper_initialisation(meta, data, ctx).items()}
