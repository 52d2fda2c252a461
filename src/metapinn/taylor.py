"""The research notes' MAML derivation, made executable (docs/design.md §2.4).

With inner SGD φ_{i+1} = φ_i − α L_i'(φ_i), ḡ_i = L_i'(φ_1) and H̄_i = L_i''(φ_1), the
meta-gradients expand to first order in α as

    g_MAML = ḡ_k − α H̄_k Σ_{j<k} ḡ_j − α Σ_{j<k} H̄_j ḡ_k + O(α²)
    g_FO   = ḡ_k − α H̄_k Σ_{j<k} ḡ_j + O(α²)
    g_R    = Σ_{i≤k} ḡ_i − α Σ_{i≤k} Σ_{j<i} H̄_i ḡ_j + O(α²)

(Nichol et al., 2018). :func:`taylor_errors` compares each with the exact gradient from
autograd through the inner loop, for a range of α: the relative error must fall as α².
Here L_1..L_{k−1} are the task's support loss and L_k its query loss; Reptile takes its k
steps on L_1..L_k.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import xarray as xr
from torch.func import grad, jvp

from .adapt import adapt
from .loss import TaskData, loss_parts
from .meta.base import meta_task
from .nets import Params, scratch_params
from .settings import AdaptSettings
from .tasks import make_task

TAYLOR_METHODS = ("maml", "fomaml", "reptile")


def _flat(p: Params) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in p.values()])


def _hvp(f, phi: Params, v: Params) -> Params:
    """H(φ) v of a scalar function of a parameter dict (forward-over-reverse)."""
    return jvp(grad(f), (phi,), (v,))[1]


def exact_meta_gradients(phi: Params, losses: list, alpha: float) -> dict[str, torch.Tensor]:
    """Exact MAML, FOMAML and Reptile gradients by autograd through the inner SGD steps.

    Args:
        phi: φ_1.
        losses: [L_1, …, L_k], each params → scalar.
        alpha: inner SGD learning rate.
    """
    k = len(losses)
    sgd = AdaptSettings(steps=1, lr=alpha, lr_decay=1.0, optimizer="sgd", coef_lr_factor=1.0,
                        compile=False)

    def run(p, fns):
        for fn in fns:
            p = adapt(p, lambda q, fn=fn: {"total": fn(q)}, sgd, differentiable=True,
                      record_log=False).params
        return p

    maml = grad(lambda p: losses[-1](run(p, losses[:-1])))(phi)
    phi_k = {n: v.detach() for n, v in run(phi, losses[:-1]).items()}
    fomaml = grad(losses[-1])(phi_k)
    phi_k1 = run(phi, losses)
    reptile = {n: (phi[n] - phi_k1[n]) / alpha for n in phi}
    assert k >= 1
    return {"maml": _flat(maml), "fomaml": _flat(fomaml), "reptile": _flat(reptile)}


def taylor_meta_gradients(phi: Params, losses: list, alpha: float) -> dict[str, torch.Tensor]:
    """The O(α) expansions of the module docstring, from ḡ_i and Hessian-vector products."""
    k = len(losses)
    gbar = [grad(fn)(phi) for fn in losses]

    def add(a, b, s=1.0):
        return {n: a[n] + s * b[n] for n in a}

    zero = {n: torch.zeros_like(v) for n, v in phi.items()}
    sum_inner = zero
    for j in range(k - 1):
        sum_inner = add(sum_inner, gbar[j])
    hk_sum = _hvp(losses[-1], phi, sum_inner) if k > 1 else zero
    hj_gk = zero
    for j in range(k - 1):
        hj_gk = add(hj_gk, _hvp(losses[j], phi, gbar[-1]))
    fomaml = add(gbar[-1], hk_sum, -alpha)
    maml = add(fomaml, hj_gk, -alpha)
    reptile = zero
    prefix = zero
    for i in range(k):
        reptile = add(reptile, gbar[i])
        if i > 0:
            reptile = add(reptile, _hvp(losses[i], phi, prefix), -alpha)
        prefix = add(prefix, gbar[i])
    return {"maml": _flat(maml), "fomaml": _flat(fomaml), "reptile": _flat(reptile)}


def taylor_errors(phi: Params, loss_fn, support: TaskData, query: TaskData, k: int,
                  alphas) -> xr.Dataset:
    """Relative error ‖g_exact − g_Taylor‖ / ‖g_exact‖ per method and α.

    Args:
        phi: initial parameters φ_1 (float64 recommended).
        loss_fn: (params, data) → scalar task loss.
        support, query: the task's support and query data.
        k: number of losses (k − 1 inner steps for MAML; k for Reptile).
        alphas: inner learning rates.
    """
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    losses = [lambda p: loss_fn(p, support)] * (k - 1) + [lambda p: loss_fn(p, query)]
    err = np.zeros((len(TAYLOR_METHODS), len(alphas)))
    for a, alpha in enumerate(alphas):
        exact = exact_meta_gradients(phi, losses, float(alpha))
        approx = taylor_meta_gradients(phi, losses, float(alpha))
        for m, name in enumerate(TAYLOR_METHODS):
            err[m, a] = float((exact[name] - approx[name]).norm() / exact[name].norm())
    return xr.Dataset(
        {"rel_error": (("method", "alpha"), err,
                       {"long_name": "relative error of the O(alpha) Taylor expansion",
                        "units": "1"})},
        coords={"method": ("method", np.array(TAYLOR_METHODS, dtype=object)),
                "alpha": ("alpha", np.asarray(alphas, dtype=float),
                          {"long_name": "inner learning rate", "units": "1"})},
        attrs={"k": k},
    )


def taylor_check(rc, k: int = 3, alphas=None, task_index: int = 0) -> xr.Dataset:
    """:func:`taylor_errors` on task ``task_index`` of the family, in float64, from the
    scratch initialisation of ``rc.seed``."""
    # float64 for the comparison; a few hundred points suffice to exercise every term
    rc = replace(rc, dtype=torch.float64, n_collocation=min(rc.n_collocation, 256),
                 n_boundary=min(rc.n_boundary, 64))
    if alphas is None:  # SGD step sizes relative to the family's loss scale, as in meta-training
        alphas = np.logspace(-4, -2, 7) / rc.loss_scale
    alphas = np.asarray(alphas, dtype=float)
    mt = meta_task(rc, make_task(rc.pde, task_index, rc.tasks), rc.seed)

    def loss(p, d):
        return loss_parts(p, d, rc.pde, rc.weights)["total"]

    ds = taylor_errors(scratch_params(rc, rc.seed), loss, mt.support, mt.query, k, alphas)
    ds.attrs.update({"pde": rc.pde.name, "task": task_index, "seed": rc.seed})
    slope = np.polyfit(np.log(alphas[:4]), np.log(ds.rel_error.values[:, :4].T), 1)[0]
    ds["slope"] = ("method", slope, {"long_name": "fitted log-log slope over the 4 smallest "
                                     "alpha", "units": "1"})
    return ds
