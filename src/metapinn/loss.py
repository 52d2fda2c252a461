"""The loss of one inverse-problem task, a pure function of the parameter dict
(docs/design.md §2.2).

    L_τ(w, θ) = λ_r mean_r(R[u_w; θ]²) + λ_b mean_b((B u_w − g)²) + λ_d mean_d((u_w − u_obs)²)

The parameter dict holds the network (``w0, b0, …``) and the unknown coefficients under
``"coef"`` (log θ for positive coefficients, raw θ for field modes). The task's data is a
dict of tensors (:func:`metapinn.tasks.task_tensors`), so the loss works under
``torch.func.grad`` and ``torch.func.vmap`` over tasks with equal point counts.
"""

from __future__ import annotations

import torch

from .nets import Params, mlp, mlp_derivatives, parse_derivative
from .pdes.base import PDEFamily
from .settings import LossWeights

TaskData = dict[str, torch.Tensor]


def solution(params: Params, points: torch.Tensor, pde: PDEFamily) -> torch.Tensor:
    """The PINN's u at ``points``: the network, times the family's ansatz factor if any."""
    u = mlp(params, points, pde.bounds)
    g = pde.ansatz(points)
    return u if g is None else g["u"] * u


def solution_derivatives(params: Params, points: torch.Tensor, pde: PDEFamily,
                         operator: dict[str, torch.Tensor | float] | None = None
                         ) -> dict[str, torch.Tensor]:
    """u and the input derivatives the residual needs, with the product rule applied to
    u = g·N where the family has an ansatz factor g (:meth:`PDEFamily.ansatz`). With
    ``operator`` (:meth:`PDEFamily.operator`) its L u is ``"Lu"`` and the derivatives it
    covers are not computed one by one."""
    names = tuple(n for n in pde.derivatives if n not in (operator or {}))
    g = pde.ansatz(points)
    if g is None:
        return mlp_derivatives(params, points, pde.bounds, pde.inputs, names, operator)
    multi = {n: parse_derivative(n, pde.inputs) for n in names}
    op = {n: parse_derivative(n, pde.inputs) for n in (operator or {})}
    firsts = {f"u_{pde.inputs[i]}" for m in (*multi.values(), *op.values()) if len(m) == 2
              for i in m}
    n = mlp_derivatives(params, points, pde.bounds, pde.inputs,
                        tuple(sorted(set(names) | firsts)), operator)
    out = {"u": g["u"] * n["u"]}
    for name, m in multi.items():
        if len(m) == 1:
            out[name] = g[name] * n["u"] + g["u"] * n[name]
        else:
            di, dj = f"u_{pde.inputs[m[0]]}", f"u_{pde.inputs[m[1]]}"
            out[name] = (g[name] * n["u"] + g[di] * n[dj] + g[dj] * n[di]
                         + g["u"] * n[name])
    if operator:  # L(gN) = g LN + N Lg + Σ_(i,j) c_ij (∂_i g ∂_j N + ∂_j g ∂_i N)
        lg = [c * g[name] for name, c in operator.items()]
        lu = g["u"] * n["Lu"] + n["u"] * sum(lg[1:], lg[0])
        for name, m in op.items():
            if len(m) == 2:
                di, dj = f"u_{pde.inputs[m[0]]}", f"u_{pde.inputs[m[1]]}"
                lu = lu + operator[name] * (g[di] * n[dj] + g[dj] * n[di])
        out["Lu"] = lu
    return out


def loss_parts(params: Params, data: TaskData, pde: PDEFamily,
               weights: LossWeights) -> dict[str, torch.Tensor]:
    """The three loss terms (unweighted) and their weighted sum ``"total"``.

    Args:
        params: network parameters plus ``"coef"``.
        data: ``colloc (Nr, 2)``, ``bc_points (Nb, 2)``, ``bc_values (Nb,)``,
            ``pair_a``/``pair_b (Np, 2)``, ``obs_points (No, 2)``, ``obs_values (No,)``.
        pde: the family (residual, bounds, inputs).
        weights: λ_r, λ_b, λ_d.
    """
    theta = pde.from_param(params["coef"])
    colloc = data["colloc"]
    d = solution_derivatives(params, colloc, pde, pde.operator(theta))
    r = pde.residual(d, theta, colloc)

    # one plain forward pass for every point that needs only u
    nb, npair = data["bc_points"].shape[0], data["pair_a"].shape[0]
    pts = torch.cat([data["bc_points"], data["pair_a"], data["pair_b"], data["obs_points"]])
    u = solution(params, pts, pde)
    b_err = torch.cat([u[:nb] - data["bc_values"], u[nb:nb + npair] - u[nb + npair:nb + 2 * npair]])
    d_err = u[nb + 2 * npair:] - data["obs_values"]

    parts = {
        "residual": (r * r).mean(),
        "boundary": (b_err * b_err).mean(),
        "data": (d_err * d_err).mean(),
    }
    parts["total"] = (weights.residual * parts["residual"] + weights.boundary * parts["boundary"]
                      + weights.data * parts["data"])
    return parts


def stack(datas: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack dicts of tensors (task data, parameter dicts) along a new leading dim, for
    ``vmap`` over tasks."""
    return {k: torch.stack([d[k] for d in datas]) for k in datas[0]}


def task_loss(params: Params, data: TaskData, pde: PDEFamily,
              weights: LossWeights) -> torch.Tensor:
    """The scalar task loss L_τ (see :func:`loss_parts`)."""
    return loss_parts(params, data, pde, weights)["total"]
