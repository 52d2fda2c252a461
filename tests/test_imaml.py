"""Implicit MAML: the CG solve, the implicit gradient on a closed-form task family, against
finite differences of the exactly solved inner problem on a PINN task, its settings and
budget, and its CG residual in the meta-training history (float64 where numbers are
compared)."""

import math

import numpy as np
import pytest
import torch
from torch.func import grad

from metapinn.adapt import AdaptSettings
from metapinn.config import compose, method_config, run_config
from metapinn.meta import get_method, method_settings
from metapinn.meta.base import Context, meta_task
from metapinn.meta.imaml import (
    conjugate_gradient,
    imaml_task_grad,
    implicit_gradient,
    proximal_solve,
)
from metapinn.metatrain import STREAM_META, build_context, meta_train
from metapinn.ncio import read_netcdf, write_netcdf
from metapinn.nets import scratch_params
from metapinn.tasks import TaskSettings, generate_tasks, make_task, rng_for, tasks_to_dataset

F64 = torch.float64
SMALL = ["model.hidden=[8,8]", "pde.n_collocation=64", "pde.n_boundary=16", "pde.n_obs=20",
         "dtype=float64"]


def _dot(a, b):
    return sum((a[k] * b[k]).sum() for k in a)


def _split(vec, sizes=(4, 2)):
    """A flat vector as a parameter dict (a network part and a ``coef`` entry)."""
    w, c = torch.split(vec, list(sizes))
    return {"w": w, "coef": c}


def _flat(p):
    return torch.cat([p["w"], p["coef"]])


def _spd(n, eigenvalues, seed):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
    return q @ torch.diag(torch.as_tensor(eigenvalues, dtype=F64)) @ q.T


# ----- (1) quadratic tasks: the regularised inner optimum and its gradient in closed form
def test_quadratic_family_gives_the_exact_implicit_gradient():
    """L_s(φ) = ½(φ−a)ᵀA(φ−a), L_q(φ) = ½‖φ−b‖²: φ* = (A+λI)⁻¹(Aa+λθ) and
    d/dθ L_q(φ*(θ)) = λ(A+λI)⁻¹(φ*−b) = (I + A/λ)⁻¹ ∇L_q(φ*)."""
    n, lam = 6, 0.7
    gen = torch.Generator().manual_seed(1)
    A = _spd(n, [0.5, 0.8, 1.2, 1.9, 2.4, 3.0], seed=2)
    a, b, theta = (torch.randn(n, generator=gen, dtype=F64) for _ in range(3))
    eye = torch.eye(n, dtype=F64)
    phi_star = torch.linalg.solve(A + lam * eye, A @ a + lam * theta)
    expected = torch.linalg.solve(eye + A / lam, phi_star - b)
    via_theta = lam * torch.linalg.solve(A + lam * eye, phi_star - b)  # chain rule
    assert torch.allclose(expected, via_theta, rtol=1e-12, atol=0)

    def support(p):
        d = _flat(p) - a
        return 0.5 * d @ A @ d

    def query(p):
        return 0.5 * ((_flat(p) - b) ** 2).sum()

    # the proximal inner problem by the shared inner loop (plain SGD on a strongly convex
    # quadratic: the error contracts by ≤ max|1 − 0.3 e| = 0.55 per step, e ∈ eig(A + λI))
    sgd = AdaptSettings(steps=200, lr=0.3, lr_decay=1.0, optimizer="sgd", coef_lr_factor=1.0,
                        compile=False)
    phi = proximal_solve(lambda p: {"total": support(p)}, _split(theta), lam, sgd)
    assert torch.allclose(_flat(phi), phi_star, rtol=0, atol=1e-12)
    # the implicit gradient by CG at the closed-form optimum: n iterations solve exactly
    d, loss, residual = implicit_gradient(support, query, _split(phi_star), lam, n, 0.0)
    assert residual < 1e-12
    assert torch.allclose(_flat(d), expected, rtol=1e-10, atol=1e-12)
    assert float(loss) == pytest.approx(float(query(_split(phi_star))), rel=1e-14)
    # the Jacobian matters: the first-order direction ∇L_q(φ*) is far from it
    assert float((phi_star - b - expected).norm()) > 0.1 * float(expected.norm())


# ----- (2) conjugate gradient itself
def test_cg_converges_in_at_most_n_iterations_and_reports_its_residual():
    # n distinct eigenvalues, condition number 10 (in floating point, lost orthogonality
    # delays the n-step termination for badly conditioned matrices: κ = 300 takes 15 here)
    n = 12
    A = _spd(n, np.geomspace(1.0, 10.0, n), seed=3)
    b = _split(torch.randn(n, generator=torch.Generator().manual_seed(4), dtype=F64), (8, 4))

    def matvec(v):
        return _split(A @ torch.cat([v["w"], v["coef"]]), (8, 4))

    def true_residual(x):
        r = torch.cat([b["w"], b["coef"]]) - A @ torch.cat([x["w"], x["coef"]])
        return float(r.norm() / torch.cat([b["w"], b["coef"]]).norm())

    x, res, it = conjugate_gradient(matvec, b, max_iter=10 * n, tol=1e-10)
    assert it <= n and res <= 1e-10
    assert abs(res - true_residual(x)) < 1e-11
    exact = torch.linalg.solve(A, torch.cat([b["w"], b["coef"]]))
    assert torch.allclose(torch.cat([x["w"], x["coef"]]), exact, rtol=1e-8, atol=1e-12)
    # three distinct eigenvalues: the Krylov space is exhausted after three iterations
    A3 = _spd(n, [1.0] * 4 + [5.0] * 4 + [20.0] * 4, seed=5)
    x3, res3, it3 = conjugate_gradient(lambda v: _split(A3 @ _flat(v), (8, 4)), b, 10 * n,
                                       1e-12)
    assert it3 == 3 and res3 <= 1e-12
    # cut off early: the reported residual is the iterate's true one, above the tolerance
    x2, res2, it2 = conjugate_gradient(matvec, b, max_iter=3, tol=1e-10)
    assert it2 == 3 and res2 > 1e-3
    assert res2 == pytest.approx(true_residual(x2), rel=1e-8)
    # cg_tol = 1 stops before any iteration (residual of x = 0 is 1); b = 0 gives x = 0
    assert conjugate_gradient(matvec, b, 5, 1.0)[1:] == (1.0, 0)
    zero = {k: torch.zeros_like(v) for k, v in b.items()}
    x0, res0, it0 = conjugate_gradient(matvec, zero, 5, 0.0)
    assert (res0, it0) == (0.0, 0) and all((v == 0).all() for v in x0.values())


# ----- (3) a real PINN task against finite differences
@pytest.fixture(scope="module")
def pinn():
    rc = run_config(compose(SMALL))
    mt = meta_task(rc, make_task(rc.pde, 0, TaskSettings(n_obs=20)), 0)
    return rc, mt


def _exact_inner_solve(loss, theta, lam, start, lbfgs=True):
    """argmin_φ loss(φ) + λ/2‖φ − θ‖², independent of the package's inner loop: L-BFGS
    (optional), then Newton steps with the dense Hessian (quadratic convergence to the
    round-off level). Returns (φ, ‖gradient‖)."""
    names = list(theta)
    shapes, sizes = [theta[k].shape for k in names], [theta[k].numel() for k in names]
    th = torch.cat([theta[k].reshape(-1) for k in names])

    def unflat(f):
        return {k: c.reshape(s) for k, c, s in zip(names, torch.split(f, sizes), shapes,
                                                   strict=True)}

    def obj(f):
        return loss(unflat(f)) + 0.5 * lam * ((f - th) ** 2).sum()

    x = torch.cat([start[k].reshape(-1) for k in names]).clone()
    if lbfgs:
        x.requires_grad_(True)
        opt = torch.optim.LBFGS([x], lr=1, max_iter=1000, history_size=100,
                                tolerance_grad=1e-12, tolerance_change=0,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            value = obj(x)
            value.backward()
            return value

        opt.step(closure)
        x = x.detach()
    hessian = torch.func.jacrev(torch.func.jacrev(obj))  # reverse-over-reverse: fast here
    for _ in range(5):
        x = x - torch.linalg.solve(hessian(x), grad(obj)(x))
    return unflat(x), float(grad(obj)(x).norm())


def test_imaml_direction_matches_finite_differences_of_the_solved_inner_problem(pinn):
    """d/dθ L_q(φ*(θ)) with φ*(θ) the proximal inner problem solved to round-off. The
    difference quotient is Richardson-extrapolated from ε = 10⁻³ and 5·10⁻⁴ (truncation
    O(ε⁴) ≈ 10⁻¹²; the solves' round-off ~10⁻¹⁶ / ε ≈ 10⁻¹³); measured agreement ~2·10⁻⁹
    relative, so 10⁻⁷ leaves margin while the first-order direction ∇L_q(φ*) misses by
    more than 1 %."""
    rc, mt = pinn
    lam = 1.0
    ctx = Context(rc, method_settings("imaml"), 0, [mt])
    theta = scratch_params(rc, 0)

    def support(p):
        return ctx.loss(p, mt.support)

    def query(p):
        return ctx.loss(p, mt.query)

    phi, gnorm = _exact_inner_solve(support, theta, lam, theta)
    assert gnorm < 1e-12
    n = sum(v.numel() for v in theta.values())
    d, loss, residual = implicit_gradient(support, query, phi, lam, n, 1e-13)
    assert residual <= 1e-13
    g_first_order = grad(query)(phi)

    def f(th):
        return float(query(_exact_inner_solve(support, th, lam, phi, lbfgs=False)[0]))

    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        v = {k: torch.randn(x.shape, generator=gen, dtype=F64) for k, x in theta.items()}

        def quotient(eps, v=v):
            return (f({k: theta[k] + eps * v[k] for k in theta})
                    - f({k: theta[k] - eps * v[k] for k in theta})) / (2 * eps)

        fd = (4 * quotient(5e-4) - quotient(1e-3)) / 3
        assert abs(float(_dot(d, v)) - fd) <= 1e-7 * abs(fd)
        assert abs(float(_dot(g_first_order, v)) - fd) > 1e-2 * abs(fd)

    # the method's own path (shared inner loop, then CG) gives the same direction when its
    # inner loop converges: plain SGD at 0.08 on a proximal objective whose Hessian has
    # eigenvalues in about [0.65, 24] contracts by ≤ 1 − 0.65·0.08 per step (600 steps:
    # ~10⁻¹⁴; measured agreement ~10⁻¹⁴ relative)
    ms = method_settings("imaml", imaml_lambda=lam, inner_optimizer="sgd", inner_steps=600,
                         inner_lr=0.08 * rc.loss_scale, cg_steps=n, cg_tol=1e-13)
    g, q_loss, res = imaml_task_grad(Context(rc, ms, 0, [mt]), theta, mt.support, mt.query)
    rel = math.sqrt(float(_dot({k: g[k] - d[k] for k in d}, {k: g[k] - d[k] for k in d})
                          / _dot(d, d)))
    assert rel < 1e-8 and res <= 1e-13
    assert float(q_loss) == pytest.approx(float(loss), rel=1e-10)
    # meta_grad averages the tasks: one task's mean is that task's direction
    g_m, loss_m, diag = get_method("imaml").meta_grad(theta, [mt], Context(rc, ms, 0, [mt]))
    assert all(torch.allclose(g_m[k], g[k], rtol=1e-12, atol=1e-15) for k in g)
    assert diag == {"cg_residual": pytest.approx(res, rel=1e-12)}


# ----- (4) settings and budget
@pytest.mark.parametrize("kw, needle", [
    ({"imaml_lambda": 0.0}, "method.imaml_lambda must be a finite number > 0"),
    ({"imaml_lambda": -1.0}, "method.imaml_lambda"),
    ({"imaml_lambda": float("nan")}, "method.imaml_lambda"),
    ({"cg_steps": 0}, "method.cg_steps must be ≥ 1"),
    ({"cg_tol": -1e-3}, "method.cg_tol must be ≥ 0"),
    ({"meta_batch": 0}, "method.meta_batch must be ≥ 1"),  # the base class still checks
])
def test_bad_settings_are_refused_by_name(kw, needle):
    with pytest.raises(ValueError, match=needle):
        method_settings("imaml", **kw)


def test_budget_counts_inner_steps_query_gradient_and_hessian_vector_products():
    C = 2.5
    ms = method_settings("imaml", inner_steps=100, cg_steps=10, meta_batch=4)
    assert ms.gradient_evals_per_task(C) == 100 + 1 + 10 * C
    assert ms.gradient_evals_per_step(C) == 4 * 126
    assert ms.for_budget(7200, C, 1000).outer_steps == 7200 // (4 * 126)
    # the configured method under the quick experiment's budget (its yaml: 100 Adam steps)
    cfg = compose(["experiment=quick", "method=imaml", "experiment.meta_budget=7200",
                   f"experiment.second_order_cost={C}"])
    composed = method_config(cfg)
    assert (composed.inner_steps, composed.inner_optimizer) == (100, "adam")
    assert composed.outer_steps == math.floor(7200 / (4 * (100 + 1 + composed.cg_steps * C)))


# ----- (5) the CG residual in the meta-training history
def test_meta_training_records_the_cg_residual(tmp_path):
    rc = run_config(compose(["model.hidden=[8,8]", "pde.n_collocation=64",
                             "pde.n_boundary=16", "pde.n_obs=20", "adapt.compile=false"]))
    ts = TaskSettings(n_train=4, n_val=1, n_test=0, n_ood=0, n_obs=20, seed=0)
    path = write_netcdf(tasks_to_dataset(rc.pde, generate_tasks(rc.pde, ts), ts),
                        tmp_path / "tasks.nc", title="t")
    # cg_tol = 0: every step runs its 3 iterations and stops at a residual > 0
    ms = method_settings("imaml", outer_steps=2, meta_batch=2, inner_steps=5, inner_lr=1e-2,
                         inner_optimizer="adam", cg_steps=3, cg_tol=0.0, val_every=2)
    meta_train(rc, ms, path, tmp_path / "imaml", second_order_cost=2.5)
    hist = read_netcdf(tmp_path / "imaml" / "history.nc")
    assert list(hist.outer_step.values) == [1, 2]
    res = hist.cg_residual.values
    assert np.isfinite(res).all() and (res > 0).all()
    assert "conjugate-gradient" in hist.cg_residual.attrs["long_name"]
    assert hist.attrs["gradient_evals_per_outer_step"] == 2 * (5 + 1 + 3 * 2.5)
    # the first step's value is the mean of its meta-batch's residuals, recomputed task by
    # task from the same initial meta-parameters
    ctx = build_context(rc, ms, path)
    pick = np.sort(rng_for(rc.seed, 0, STREAM_META).choice(len(ctx.train), 2, replace=False))
    theta = get_method("imaml").init_meta(ctx)
    per_task = [imaml_task_grad(ctx, theta, ctx.train[i].support, ctx.train[i].query)
                for i in pick]
    assert res[0] == pytest.approx(np.mean([r for _, _, r in per_task]), rel=1e-5)
    assert hist.meta_loss.values[0] == pytest.approx(np.mean([float(q) for _, q, _ in per_task]),
                                                     rel=1e-5)
    # a method without diagnostics writes no such variable
    maml = method_settings("maml", outer_steps=1, meta_batch=2, inner_steps=1, inner_lr=1e-2)
    meta_train(rc, maml, path, tmp_path / "maml")
    assert "cg_residual" not in read_netcdf(tmp_path / "maml" / "history.nc")


def test_lambda_follows_the_loss_scale_so_a_scaled_family_gives_a_scaled_gradient(pinn):
    """λ is in units of ``pde.loss_scale``. Multiply every loss weight and the loss scale
    by s: the inner SGD rate is divided by s and λ multiplied by it, so the proximal
    objective is s × the original one, φ is the same, and the implicit gradient
    (I + sH/(sλ))⁻¹ s∇L_q is s × the original: 3 CG steps agree to ~2·10⁻¹⁵ relative in
    float64 (more CG steps amplify round-off: 10 gave 3·10⁻⁵, so the test stops at 3).
    With λ left unscaled the proximal term would be s× weaker and the direction would
    differ by far more than that."""
    from dataclasses import replace

    from metapinn.meta.imaml import proximal_strength
    from metapinn.settings import LossWeights

    rc, mt = pinn
    s = 1000.0
    ms = method_settings("imaml", imaml_lambda=0.5, inner_optimizer="sgd", inner_steps=50,
                         inner_lr=0.05, cg_steps=3, cg_tol=0.0)
    w = rc.weights
    scaled = replace(rc, loss_scale=rc.loss_scale * s,
                     weights=LossWeights(w.residual * s, w.boundary * s, w.data * s))
    theta = scratch_params(rc, 0)
    ctx, ctx_s = Context(rc, ms, 0, [mt]), Context(scaled, ms, 0, [mt])
    assert proximal_strength(ctx_s) == pytest.approx(s * proximal_strength(ctx), rel=1e-15)
    g, loss, _ = imaml_task_grad(ctx, theta, mt.support, mt.query)
    g_s, loss_s, _ = imaml_task_grad(ctx_s, theta, mt.support, mt.query)
    assert float(loss_s) == pytest.approx(s * float(loss), rel=1e-10)
    diff = {k: g_s[k] / s - g[k] for k in g}
    assert math.sqrt(float(_dot(diff, diff) / _dot(g, g))) < 1e-12
    # the unscaled λ (what the code did before): a visibly different direction
    phi_u = proximal_solve(lambda p: ctx_s.parts(p, mt.support), theta, ms.imaml_lambda,
                           ctx_s.inner_settings)
    g_u, _, _ = implicit_gradient(lambda p: ctx_s.loss(p, mt.support),
                                  lambda p: ctx_s.loss(p, mt.query), phi_u, ms.imaml_lambda,
                                  ms.cg_steps, ms.cg_tol)
    diff_u = {k: g_u[k] / s - g[k] for k in g}
    assert math.sqrt(float(_dot(diff_u, diff_u) / _dot(g, g))) > 1e-2
