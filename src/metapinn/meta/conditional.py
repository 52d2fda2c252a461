"""Baseline ``conditional``: a parametric PINN u(x, t; θ) with the coefficients as inputs.

The network is the family's tanh MLP with the coefficient parametrisation p = to_param(θ)
(the numbers a PINN's ``"coef"`` entry holds: log θ for positive coefficients, the raw
modes of a field) appended to its input. Like the space-time inputs, p is mapped affinely
to [−1, 1] inside the network, over the prior's box in the parametrisation:
q = (p − m)/h with m, h the box's midpoint and half-width, so the prior centre is q = 0.

Meta-training minimises the physics loss over the prior (parametric PINNs, e.g. Sun et
al. 2020, "Surrogate modeling for fluid flows based on physics-constrained deep learning
without simulation data"): every outer step draws one coefficient vector from the prior per
meta-batch task and averages the loss λ_r·residual + λ_b·boundary of u(·; θ) at that fixed
θ over the task's collocation and boundary points. There is no data term: a random θ has no
observations. No family's boundary or initial values depend on θ, so any task's points
serve. One task-loss gradient per draw (``ConditionalSettings.gradient_evals_per_task``).

Hand-over to a task (:func:`conditional_initialisation`): (1) p is fitted to the task's
observations with the network frozen — L-BFGS on the data misfit mean((u(x_obs; p) −
u_obs)²) alone, from the prior centre, for ``theta_fit_steps`` iterations; (2) p is folded
into the first layer, W₀[x; q] + b₀ = W₀ˣx + (W₀^q q + b₀), which gives a plain PINN
parameter dict with ``"coef"`` = p. The common inner loop then adapts everything.

Why only the data misfit: the frozen network was trained to satisfy the physics at every p
of the prior, so its residual at p measures where the network is accurate, not which θ
produced the observations; adding it would pull p towards the network's best-trained
region. The observations are the only evidence about θ, and the fit needs no input
derivatives (a forward pass over the observation points per evaluation).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..loss import TaskData, loss_parts, solution
from ..nets import TORCH_SEED_OFFSET, Params, init_mlp, n_layers
from ..pdes.base import PDEFamily
from ..tasks import rng_for
from .base import Context, MetaTask
from .settings import ConditionalSettings

STREAM_PRIOR = 5  # coefficient draws of the physics loss over the prior (see draw_key)
FIT_BOX = 3.0  # the fitted q is kept in [−3, 3]: the prior box widened by its width per side


def coef_scaling(pde: PDEFamily, dtype: torch.dtype,
                 device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Midpoint m and half-width h of the prior box in the parametrisation (q = (p − m)/h)."""
    lo = pde.to_param(np.array([c.low for c in pde.coefficients]))
    hi = pde.to_param(np.array([c.high for c in pde.coefficients]))
    mid = torch.as_tensor(0.5 * (lo + hi), dtype=dtype, device=device)
    half = torch.as_tensor(0.5 * (hi - lo), dtype=dtype, device=device)
    return mid, half


def conditional_params(rc, seed: int) -> Params:
    """The conditional network's initial weights: Glorot, as :func:`metapinn.nets.scratch_params`
    builds the plain network from ``seed``, with d + n_coef inputs."""
    gen = torch.Generator().manual_seed(TORCH_SEED_OFFSET + seed)
    widths = (rc.widths[0] + len(rc.pde.coefficients), *rc.widths[1:])
    return init_mlp(widths, gen, rc.dtype, rc.device)


def fold(meta: Params, p: torch.Tensor, pde: PDEFamily) -> Params:
    """The plain PINN parameter dict equal to the conditional network at p:
    w₀ = W₀ˣ, b₀ = b₀ + W₀^q q, later layers unchanged, ``coef`` = p (differentiable in both
    ``meta`` and ``p``)."""
    d = len(pde.inputs)
    mid, half = coef_scaling(pde, p.dtype, p.device)
    w0 = meta["w0"]
    params: Params = {"w0": w0[:, :d], "b0": meta["b0"] + w0[:, d:] @ ((p - mid) / half)}
    for i in range(1, n_layers(meta)):
        params[f"w{i}"], params[f"b{i}"] = meta[f"w{i}"], meta[f"b{i}"]
    params["coef"] = p
    return params


def physics_loss(params: Params, data: TaskData, ctx: Context) -> torch.Tensor:
    """λ_r·residual + λ_b·boundary of a plain PINN on ``data``'s points (no data term)."""
    parts = loss_parts(params, data, ctx.rc.pde, ctx.rc.weights)
    w = ctx.rc.weights
    return w.residual * parts["residual"] + w.boundary * parts["boundary"]


def draw_key(meta: Params, batch: list[MetaTask]) -> int:
    """The index of one outer step's coefficient draws: a digest of the meta-parameters
    and the meta-batch's task indices.

    The outer loop does not pass its step number to ``meta_grad``; the meta-parameters at
    step s are a deterministic function of (seed, s) — bit-for-bit, resumption included
    (the checkpoint restores them exactly) — and change at every step, so the digest
    stands for the step: the same run draws the same θ, another step other θ.
    """
    h = hashlib.sha256()
    for k in sorted(meta):
        h.update(k.encode())
        h.update(meta[k].detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    h.update(np.array([mt.task.index for mt in batch], dtype=np.int64).tobytes())
    return int.from_bytes(h.digest()[:8], "little") >> 1


def prior_draws(pde: PDEFamily, seed: int, key: int, n: int) -> np.ndarray:
    """``n`` coefficient vectors θ from the family's prior, shape ``(n, n_coef)``, from the
    generator of (run seed, ``key``, :data:`STREAM_PRIOR`)."""
    rng = rng_for(seed, key, STREAM_PRIOR)
    return np.stack([pde.sample_coefficients(rng) for _ in range(n)])


def meta_physics_loss(meta: Params, batch: list[MetaTask], p: torch.Tensor,
                      ctx: Context) -> torch.Tensor:
    """Mean over draws i of the physics loss of u(·; p_i) on batch task i's points."""
    pde = ctx.rc.pde
    losses = [physics_loss(fold(meta, p[i], pde), mt.full, ctx) for i, mt in enumerate(batch)]
    return torch.stack(losses).mean()


def fit_coefficients(meta: Params, data: TaskData, ctx: Context) -> torch.Tensor:
    """p fitted to ``data``'s observations with the network frozen.

    L-BFGS (strong Wolfe line search; deterministic) on mean((u(x_obs; p) − u_obs)²) in the
    normalised coordinate q, from the prior centre, for ``ctx.ms.theta_fit_steps``
    iterations. The result is then clamped to |q| ≤ :data:`FIT_BOX` (the prior box widened
    by its width per side: the network never saw coefficients beyond it, and the fit of a
    poorly trained network can run off to where its tanh units saturate), and the prior
    centre is returned instead where that does not fit the observations better. (A smooth
    bound, q = 3·tanh(s), was tried: L-BFGS's first long steps then stick in the saturated
    region, and it missed manufactured optima that the unbounded fit finds.)
    """
    pde = ctx.rc.pde
    net = {k: v.detach() for k, v in meta.items()}
    dtype, device = net["w0"].dtype, net["w0"].device
    mid, half = coef_scaling(pde, dtype, device)
    p0 = torch.as_tensor(pde.to_param(pde.prior_centre()), dtype=dtype, device=device)
    steps = ctx.ms.theta_fit_steps
    if steps == 0:
        return p0
    pts, obs = data["obs_points"].to(dtype), data["obs_values"].to(dtype)

    def misfit(q):
        r = solution(fold(net, mid + half * q, pde), pts, pde) - obs
        return (r * r).mean()

    q0 = (p0 - mid) / half
    q = q0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([q], lr=1.0, max_iter=steps, max_eval=2 * steps,
                            tolerance_grad=1e-12, tolerance_change=1e-14, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = misfit(q)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        q_fit = q.detach().clamp(-FIT_BOX, FIT_BOX)
        m_fit, m0 = misfit(q_fit), misfit(q0)
        if not (torch.isfinite(m_fit) and m_fit < m0):
            return p0
        return mid + half * q_fit


def conditional_initialisation(meta: Params, data: TaskData, ctx: Context) -> Params:
    """The plain PINN parameters of a task: p fitted to its observations, folded in."""
    p = fit_coefficients(meta, data, ctx)
    with torch.no_grad():
        return {k: v.detach().clone() for k, v in fold(meta, p, ctx.rc.pde).items()}


class Conditional:
    """The parametric-PINN baseline (module docstring): the meta-parameters are the
    conditional network's weights (``w0`` has d + n_coef columns; no ``coef`` entry)."""

    name = "conditional"
    trainable = True
    settings = ConditionalSettings

    def init_meta(self, ctx: Context) -> Params:
        return conditional_params(ctx.rc, ctx.seed)

    def meta_grad(self, meta: Params, batch: list[MetaTask], ctx: Context):
        """Gradient and value of the mean physics loss over one prior draw per batch task
        (θ fixed at each draw; ``method.vmap`` is ignored: a loop, as pretraining's)."""
        thetas = prior_draws(ctx.rc.pde, ctx.seed, draw_key(meta, batch), len(batch))
        ref = meta["w0"]
        p = torch.as_tensor(ctx.rc.pde.to_param(thetas), dtype=ref.dtype, device=ref.device)
        g, loss = torch.func.grad_and_value(meta_physics_loss)(meta, batch, p, ctx)
        return g, loss

    def initialisation(self, meta: Params, data: TaskData, ctx: Context) -> Params:
        return conditional_initialisation(meta, data, ctx)
