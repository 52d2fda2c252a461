"""Implicit MAML (Rajeswaran, Finn, Kakade & Levine, 2019, "Meta-Learning with Implicit
Gradients"), on the shared inner loop.

Each task's inner problem is proximal: from the meta-parameters θ (network and
coefficient guess alike),

    φ_τ ≈ argmin_φ  L_τ^support(φ) + λ/2 ‖φ − θ‖²,   λ = imaml_lambda × pde.loss_scale,

solved by :func:`metapinn.adapt.adapt` without a graph (any inner optimiser, hundreds of
steps, memory independent of their number). At a stationary point of the proximal
objective, dφ_τ/dθ = (I + H/λ)⁻¹ with H = ∇²L_τ^support(φ_τ), so the meta-gradient of
L_τ^query(φ_τ(θ)) is

    g = (I + H/λ)⁻¹ ∇L_τ^query(φ_τ),

obtained by conjugate gradient on (I + H/λ) x = ∇L_τ^query(φ_τ) with Hessian-vector
products (reverse-over-reverse: ``torch.func.vjp`` of ``torch.func.grad``; the gradient's
graph is built once per task and each product is one backward pass through it). The
solve stops after ``cg_steps`` iterations or at relative residual ``cg_tol``; the mean
final relative residual of the meta-batch is reported as the diagnostic ``cg_residual``
(recorded per outer step in ``history.nc``).

The direction is exact only where the inner problem is solved exactly; with a finite
inner loop it is the paper's approximate implicit gradient. ``method.vmap`` is ignored:
the inner loop runs eagerly with autograd and CG stops on a data-dependent test, so the
meta-batch is a per-task loop.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch.func import grad, grad_and_value, vjp

from ..adapt import adapt
from ..loss import TaskData
from ..nets import Params
from ..settings import AdaptSettings
from .base import Context, InitialisationMethod, MetaTask
from .settings import ImamlSettings

PartsFn = Callable[[Params], dict[str, torch.Tensor]]


def _dot(a: Params, b: Params) -> torch.Tensor:
    return sum((a[k] * b[k]).sum() for k in a)


def conjugate_gradient(matvec: Callable[[Params], Params], b: Params, max_iter: int,
                       tol: float) -> tuple[Params, float, int]:
    """Solve ``A x = b`` for a symmetric positive definite ``A`` given as ``matvec``, over
    parameter dicts, from x = 0.

    Args:
        matvec: ``v -> A v``.
        b: the right-hand side.
        max_iter: at most this many iterations (matrix-vector products).
        tol: stop once the relative residual ‖b − A x‖/‖b‖ is ≤ ``tol``.

    Returns:
        ``(x, relative residual, iterations)``; the residual is that of the recurrence
        (no extra product), equal to ‖b − A x‖/‖b‖ down to about cond(A) × the dtype's
        precision, below which it may fall while the true one stagnates (float32 at the
        quick Burgers sizes: 3·10⁻¹² against 7·10⁻⁷ after 30 iterations; 2.87·10⁻⁴ for
        both after 10). A zero ``b`` gives x = 0 after no iteration. Where ``A`` shows
        non-positive curvature along a search direction (an inner problem solved to a
        saddle rather than a minimum) the solve stops there with the current x and its
        residual.
    """
    x = {k: torch.zeros_like(v) for k, v in b.items()}
    r = {k: v.clone() for k, v in b.items()}
    p = {k: v.clone() for k, v in b.items()}
    b_norm = float(torch.sqrt(_dot(b, b)))
    if b_norm == 0.0:
        return x, 0.0, 0
    rr = _dot(r, r)
    it = 0
    while it < max_iter and float(torch.sqrt(rr)) > tol * b_norm:
        ap = matvec(p)
        pap = _dot(p, ap)
        if not pap > 0:
            break
        alpha = rr / pap
        x = {k: x[k] + alpha * p[k] for k in x}
        r = {k: r[k] - alpha * ap[k] for k in r}
        rr_new = _dot(r, r)
        p = {k: r[k] + (rr_new / rr) * p[k] for k in p}
        rr, it = rr_new, it + 1
    return x, float(torch.sqrt(rr)) / b_norm, it


def proximal_parts(parts_fn: PartsFn, theta: Params, lam: float) -> PartsFn:
    """``parts_fn`` with λ/2 ‖φ − θ‖² (over every entry, ``"coef"`` included) added to its
    ``"total"`` (and reported as ``"proximal"``); θ is held fixed (detached)."""
    anchor = {k: v.detach() for k, v in theta.items()}

    def parts(p: Params) -> dict[str, torch.Tensor]:
        out = dict(parts_fn(p))
        prox = 0.5 * lam * sum(((p[k] - anchor[k]) ** 2).sum() for k in anchor)
        out["proximal"] = prox
        out["total"] = out["total"] + prox
        return out

    return parts


def proximal_solve(parts_fn: PartsFn, theta: Params, lam: float, settings: AdaptSettings,
                   run=None) -> Params:
    """φ ≈ argmin L(φ) + λ/2 ‖φ − θ‖² by the shared inner loop from θ (no graph kept);
    ``run``: how the loop is run (default :func:`metapinn.adapt.adapt` without a log;
    meta-training passes ``Context.run_inner``)."""
    run = run or partial(adapt, record_log=False)
    return run(theta, proximal_parts(parts_fn, theta, lam), settings, differentiable=False).params


def implicit_gradient(support_loss: Callable[[Params], torch.Tensor],
                      query_loss: Callable[[Params], torch.Tensor], phi: Params, lam: float,
                      cg_steps: int, cg_tol: float) -> tuple[Params, torch.Tensor, float]:
    """(I + H/λ)⁻¹ ∇L_query(φ) with H = ∇²L_support(φ), by :func:`conjugate_gradient`.

    Returns:
        ``(direction, L_query(φ), final relative CG residual)``.
    """
    phi = {k: v.detach() for k, v in phi.items()}
    g_query, loss = grad_and_value(query_loss)(phi)
    _, hvp = vjp(grad(support_loss), phi)  # H symmetric: the vjp is H v

    def matvec(v: Params) -> Params:
        hv = hvp(v)[0]
        return {k: v[k] + hv[k] / lam for k in v}

    x, residual, _ = conjugate_gradient(matvec, g_query, cg_steps, cg_tol)
    return {k: v.detach() for k, v in x.items()}, loss.detach(), residual


def imaml_task_grad(ctx: Context, theta: Params, support: TaskData,
                    query: TaskData) -> tuple[Params, torch.Tensor, float]:
    """(implicit meta-gradient, post-adaptation query loss, final CG relative residual) of
    one task: the proximal inner solve, then the CG solve at its end."""
    ms = ctx.ms
    lam = proximal_strength(ctx)
    phi = proximal_solve(lambda p: ctx.parts(p, support), theta, lam, ctx.inner_settings,
                         run=ctx.run_inner)
    return implicit_gradient(lambda p: ctx.loss(p, support), lambda p: ctx.loss(p, query),
                             phi, lam, ms.cg_steps, ms.cg_tol)


def proximal_strength(ctx: Context) -> float:
    """λ of the proximal term: ``method.imaml_lambda`` in units of the family's loss scale
    (``pde.loss_scale``), so that the term weighs the same against every family's loss
    (Darcy's data term makes its loss ~1000× larger; with λ unscaled the proximal term,
    and with it the implicit gradient's (I + H/λ)⁻¹, would be 1000× weaker there). Scaling
    the loss and ``loss_scale`` together scales the meta-gradient and nothing else."""
    return ctx.ms.imaml_lambda * ctx.rc.loss_scale


class IMAML(InitialisationMethod):
    """Implicit MAML: proximal inner loop, implicit meta-gradient by conjugate gradient."""

    name = "imaml"
    settings = ImamlSettings
    revision = 2  # λ in units of pde.loss_scale (revision 1: λ = imaml_lambda itself)
    # the third element of meta_grad's result, per outer step (long_name, units)
    diagnostics = {"cg_residual": ("mean final relative residual of the conjugate-gradient "
                                   "solves of the meta-batch", "1")}

    def graph_free_evals(self, ms) -> float:
        """Graph-free evaluations per task and outer step: the proximal solve's."""
        return float(ms.inner_steps)

    def history_attrs(self, ctx: Context) -> dict[str, float]:
        """The proximal strength actually used, λ = imaml_lambda × pde.loss_scale."""
        return {"imaml_lambda_effective": proximal_strength(ctx)}

    def meta_grad(self, meta: Params, batch: list[MetaTask], ctx: Context):
        """(mean implicit gradient, mean query loss, {"cg_residual": mean residual}) of the
        meta-batch, one task after another (``method.vmap`` is ignored)."""
        total, losses, residuals = None, [], []
        for t in batch:
            g, loss, res = imaml_task_grad(ctx, meta, t.support, t.query)
            total = g if total is None else {k: total[k] + g[k] for k in g}
            losses.append(loss)
            residuals.append(res)
        n = len(batch)
        return ({k: v / n for k, v in total.items()}, torch.stack(losses).mean(),
                {"cg_residual": sum(residuals) / n})
